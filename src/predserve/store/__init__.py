"""Snapshot stores: LMDB (embedded default) and Cloud Bigtable, behind one interface."""

from __future__ import annotations

from predserve.errors import StoreError
from predserve.store.base import SnapshotInfo, ModelState, MAX_ID_BYTES, MAX_VALUE_BYTES, encode_id
from predserve.store.snapshots import SnapshotStore

__all__ = ["open_store", "SnapshotStore", "SnapshotInfo", "ModelState", "MAX_ID_BYTES", "MAX_VALUE_BYTES", "encode_id"]


def open_store(url: str, readonly: bool = False, create: bool = True, **options: object) -> SnapshotStore:
    """Open a store by URL: ``PATH`` or ``lmdb://PATH``; ``bigtable://PROJECT/INSTANCE/TABLE``.

    ``create=False`` (and ``readonly``) raises StoreMissing, "no store at URL: nothing has been
    exported there yet", when the store does not exist, instead of making an empty one. Only
    ``predserve export`` creates stores: every other command opens with create=False, so a
    mistyped ``--store`` leaves nothing behind.
    """
    if url.startswith("bigtable://"):
        from predserve.store.bigtable import BigtableStore

        return BigtableStore.from_url(url, readonly=readonly, create=create, **options)  # type: ignore[arg-type]
    if "://" in url and not url.startswith("lmdb://"):
        raise StoreError(f"unknown store URL {url!r}: use a path, lmdb://PATH or bigtable://PROJECT/INSTANCE/TABLE")
    from predserve.store.lmdb import LmdbStore

    return LmdbStore(url.removeprefix("lmdb://"), readonly=readonly, create=create)
