"""predserve: BigQuery ML SQL in, sub-millisecond prediction serving out.

The data flows through four stages, one package each:
``warehouse`` (SQL and models) -> ``pipeline`` (Beam export) -> ``store`` (snapshots) -> ``serving`` (HTTP).
"""

from predserve.warehouse import Warehouse

__all__ = ["Warehouse", "__version__"]
__version__ = "0.1.0"
