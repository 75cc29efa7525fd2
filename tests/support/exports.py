"""A real export (the Beam pipeline, the gates, the publish and GC), as the export tests run it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from predserve.pipeline import run_export
from predserve.pipeline.export import ExportSummary


def export(warehouse: str | Path, store_url: str, *, model: str, key: str, **options: Any) -> ExportSummary:
    """A real export (the Beam pipeline, the gates, the publish and GC) of ``model`` keyed by ``key``."""
    return run_export(warehouse=str(warehouse), model=model, key=key, store_url=store_url, **options)
