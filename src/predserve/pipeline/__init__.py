"""The export stage: an Apache Beam job from warehouse predictions to a published snapshot.

The names below load on first use, so ``predserve.pipeline.drift`` (the drift's figures) can
be imported without importing Beam. What a snapshot carries (its profile, drift and verdicts)
is read through ``predserve.store.reports``, which imports nothing from here.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "run_export": "predserve.pipeline.export",
    "ExportSummary": "predserve.pipeline.export",
    "GateRefused": "predserve.pipeline.export",
    "GatePolicy": "predserve.pipeline.gates",
    "ExportToSnapshot": "predserve.pipeline.sinks",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
