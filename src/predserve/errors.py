"""Errors shown to users. Each message says what was wrong and how to fix it."""


class PredserveError(Exception):
    """Base of every error predserve raises on purpose."""


class SQLError(PredserveError):
    """A statement could not be parsed or run; the message points at the statement."""


class ModelError(PredserveError):
    """A CREATE MODEL / ML.* call was invalid (bad option, missing column, unknown model...)."""


class StoreError(PredserveError):
    """The key-value store refused an operation or could not be reached."""


class StoreMissing(StoreError):
    """The store (an LMDB path, a Bigtable table or instance) does not exist and was not to be
    created: only ``predserve export`` creates stores, so a mistyped ``--store`` is refused."""


class StoreUnavailable(StoreError):
    """The store did not answer in time; callers may retry later.

    ``reason`` names the failure for metrics: ``timeout`` (no answer within the deadline),
    ``unavailable`` (could not be reached: connections refused or reset), ``damaged``."""

    reason = "unavailable"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class StoreDamaged(StoreUnavailable):
    """The store's files are damaged (truncated, corrupted pages): refuse to read, name the store.

    A subclass of StoreUnavailable so the API answers 503 and /readyz goes not-ready."""

    reason = "damaged"


class ExportError(PredserveError):
    """The export job failed or a publish gate refused the snapshot."""
