"""The export stage: an Apache Beam job from warehouse predictions to a published snapshot."""

from predserve.pipeline.export import ExportSummary, GateRefused, run_export
from predserve.pipeline.gates import GatePolicy
from predserve.pipeline.sinks import ExportToSnapshot

__all__ = ["run_export", "ExportSummary", "GateRefused", "GatePolicy", "ExportToSnapshot"]
