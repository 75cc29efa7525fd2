"""predserve: BigQuery ML SQL in, sub-millisecond prediction serving out.

The data flows through four stages, one package each:
``warehouse`` (SQL and models) -> ``pipeline`` (Beam export) -> ``store`` (snapshots) -> ``serving`` (HTTP).
``Warehouse`` loads on first use, so importing one stage does not import the others.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Warehouse", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Warehouse":
        from predserve.warehouse import Warehouse

        return Warehouse
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
