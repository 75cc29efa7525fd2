"""predserve: BigQuery ML SQL in; predictions out, in well under a millisecond of server time.

The data flows through four stages, one package each:
``warehouse`` (SQL and models) -> ``pipeline`` (Beam export) -> ``store`` (snapshots) -> ``serving`` (HTTP).

``from predserve import Warehouse`` works as always, but the warehouse (scikit-learn,
XGBoost, DuckDB) is imported only when it is first used: ``predserve serve`` needs none of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from predserve.warehouse import Warehouse

__all__ = ["Warehouse", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Warehouse":
        from predserve.warehouse import Warehouse

        return Warehouse
    raise AttributeError(f"module 'predserve' has no attribute {name!r}")
