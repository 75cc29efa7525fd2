"""Start bqemulator offline: its start-up runs DuckDB's ``INSTALL spatial``, which downloads
the extension and fails without network. Replace that one step with a no-op (only GEOGRAPHY is
lost, which predserve does not use), then hand over to bqemulator's own command line.

    .cache/bqemulator/bin/python tools/bqemulator/launch.py start --rest-port P --grpc-port G --project ID
"""

from bqemulator.cli import main
from bqemulator.storage.engine import DuckDBEngine


def _no_spatial(self: DuckDBEngine) -> None:
    """GEOGRAPHY support needs a download; predserve's tests do not use it."""


DuckDBEngine._load_spatial = _no_spatial

if __name__ == "__main__":
    main()
