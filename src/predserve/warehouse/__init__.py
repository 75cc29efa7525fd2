"""The warehouse stage: BigQuery ML SQL on an embedded DuckDB file.

``from predserve.warehouse import Warehouse`` loads the engine (DuckDB, the model families and
their libraries) when first used, not on import of this package: the export's profile reads
its SQL through ``predserve.warehouse.sql`` alone and must not pay for the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from predserve.warehouse.engine import Warehouse

__all__ = ["Warehouse"]


def __getattr__(name: str) -> Any:
    if name == "Warehouse":
        from predserve.warehouse.engine import Warehouse

        return Warehouse
    raise AttributeError(f"module 'predserve.warehouse' has no attribute {name!r}")
