"""The warehouse stage: BigQuery ML SQL on an embedded DuckDB file."""

from predserve.warehouse.engine import Warehouse

__all__ = ["Warehouse"]
