"""What push and stream share: opening a store to update (never creating one) and applying
one batch with its bad items reported by their tag (a line number, a message id)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Sequence, TypeVar

from predserve.errors import StoreError
from predserve.store import SnapshotStore, open_store
from predserve.store.updates import Update, UpdateRejected, UpdateResult, check_columns, snapshot_columns

Tag = TypeVar("Tag")


@dataclass
class BatchOutcome(Generic[Tag]):
    """One batch: what the store did with it (None when nothing was applied) and its bad items."""

    result: UpdateResult | None = None
    bad: list[tuple[Tag, str]] = field(default_factory=list)


def open_update_store(url: str, model: str) -> SnapshotStore:
    """Open ``url`` for writing updates to ``model``, refusing a store or model that does not exist.

    Only ``predserve export`` creates stores and snapshots: an update needs a published
    snapshot to go into, and a typo in ``--store`` must not leave an empty store behind. The
    store is looked at read-only first, so nothing is created when it is missing.
    """
    with open_store(url, readonly=True) as probe:
        state = probe.state(model)
    if state is None or state.current is None:
        raise StoreError(f"model {model!r} has no published snapshot in {url}; run `predserve export` first "
                         "(updates go into the current snapshot)")
    return open_store(url, create=False)


def current_columns(store: SnapshotStore, model: str) -> list[str] | None:
    """The current snapshot's prediction columns (None when its export recorded none)."""
    info = store.current(model)
    return snapshot_columns(info.metadata) if info is not None else None


def apply_batch(store: SnapshotStore, model: str, items: Sequence[tuple[Tag, Update | str]],
                skip_bad: bool, columns: list[str] | None = None) -> BatchOutcome[Tag]:
    """Apply the updates of one batch, all or (``skip_bad``) all the good ones.

    ``items`` are (tag, parsed update or the reason it could not be parsed). Updates with
    columns the current snapshot lacks are bad too (checked against ``columns`` first, so
    every bad item of the batch is reported at once, and again by the store in its own
    transaction, in case a publish changed the columns meanwhile). Without ``skip_bad`` one
    bad item means nothing of the batch is applied.
    """
    outcome: BatchOutcome[Tag] = BatchOutcome()
    good: list[tuple[Tag, Update]] = []
    for tag, item in items:
        if isinstance(item, str):
            outcome.bad.append((tag, item))
            continue
        try:
            check_columns(item, columns)
        except StoreError as exc:
            outcome.bad.append((tag, str(exc)))
            continue
        good.append((tag, item))
    if outcome.bad and not skip_bad:
        return outcome
    while good:
        try:
            outcome.result = store.apply_updates(model, [update for _, update in good])
            break
        except UpdateRejected as exc:
            outcome.bad.append((good[exc.index][0], str(exc)))
            if not skip_bad:
                return outcome
            del good[exc.index]
    return outcome
