"""Every default of predserve and every environment variable it reads, written once.

The command line's options (``predserve serve``'s take their names, variables and defaults from
:data:`SERVE`), the server's configuration (serving/config.py), the store's snapshot lifecycle
(keep, grace, stale, update retention) and the export read their defaults here, and
docs/operations.md's table of settings is held against :data:`SERVE` by a test
(tests/test_settings.py). Only the command line reads the environment (through click's
``envvar``); the rest of the code gets values passed in.

This module imports nothing of predserve's, so every layer may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# ---- snapshots: how many are kept, and for how long (store, export, `predserve gc`) ----------
KEEP = 3  # published snapshots kept per model for rollback
# Seconds after a snapshot stops being current during which GC never deletes it, whatever
# ``keep`` says: servers cache the pointer (POINTER_TTL), so a retired snapshot is still read
# for a moment. Must exceed every server's pointer cache plus the writers' clock skew.
GRACE = 60.0
STALE_AFTER = 24 * 3600.0  # seconds after which an unfinished snapshot (or export staging) is abandoned
UPDATE_RETENTION = 7 * 24 * 3600.0  # seconds pushed/streamed updates stay in the log (see store/updates.py)

# ---- the export's drift gates (docs/pipeline.md: how they were chosen; store/limits.py: DriftLimits) ----
MAX_DRIFT = 0.1  # per column: JS divergence or L-infinity distance
MAX_CHANGED_LABELS = 0.1  # per label column: fraction of sampled ids whose value changed
MAX_MOVED = 0.1  # per numeric column: fraction of sampled ids that moved (see MOVE_TOLERANCE)
MOVE_TOLERANCE = 0.5  # an id moved when its value changed by more than this many standard deviations

# ---- the API ------------------------------------------------------------------------------------
IAM_FILE = "predserve-iam.json"  # the service-account file, in the working directory
IAM_ENV = "PREDSERVE_IAM"
POINTER_TTL = 1.0  # seconds a server caches a model's current-snapshot pointer
# A network store (Bigtable) read: its deadline, retries and hedge included, before the API
# answers 503 (the budget per prediction is 100 ms), and the latest a slow one gets a hedge.
# Chosen from bench/faults.py: docs/operations.md, "Reads from Bigtable".
READ_TIMEOUT = 0.09
HEDGE_AFTER = 0.05
PORT = 8000


@dataclass(frozen=True)
class Setting:
    """One option of ``predserve serve``: its flag, the variables it is read from, its default."""

    option: str
    envvars: tuple[str, ...]
    default: Any = None  # None: required (--store) or unset (--iam: IAM_FILE then)


SERVE: dict[str, Setting] = {  # keyed by the parameter name in ServeConfig / ServerOptions
    "store": Setting("--store", ("PREDSERVE_STORE",)),
    "host": Setting("--host", ("PREDSERVE_HOST",), "127.0.0.1"),
    "port": Setting("--port", ("PREDSERVE_PORT", "PORT"), PORT),  # PORT: what Cloud Run sets
    "workers": Setting("--workers", ("PREDSERVE_WORKERS",), 1),
    "iam_path": Setting("--iam", (IAM_ENV,)),
    "no_auth": Setting("--no-auth", ("PREDSERVE_NO_AUTH",), False),
    "stale": Setting("--stale", ("PREDSERVE_STALE",), "mark"),
    "pointer_ttl": Setting("--pointer-ttl", ("PREDSERVE_POINTER_TTL",), POINTER_TTL),
    "max_batch": Setting("--max-batch", ("PREDSERVE_MAX_BATCH",), 1000),
    "max_body": Setting("--max-body", ("PREDSERVE_MAX_BODY",), 1 << 20),
    "read_timeout": Setting("--read-timeout", ("PREDSERVE_READ_TIMEOUT",), READ_TIMEOUT),
    "hedge_after": Setting("--hedge-after", ("PREDSERVE_HEDGE_AFTER",), HEDGE_AFTER),
    "header_timeout": Setting("--header-timeout", ("PREDSERVE_HEADER_TIMEOUT",), 5.0),
    "body_timeout": Setting("--body-timeout", ("PREDSERVE_BODY_TIMEOUT",), 10.0),
    "max_connections": Setting("--max-connections", ("PREDSERVE_MAX_CONNECTIONS",), 1024),
    "access_log": Setting("--access-log", ("PREDSERVE_ACCESS_LOG",), False),
}


def serve_default(name: str) -> Any:
    """The default of ``predserve serve``'s parameter ``name`` (for the configuration dataclasses)."""
    return SERVE[name].default
