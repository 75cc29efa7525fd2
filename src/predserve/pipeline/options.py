"""Beam pipeline options from the export's extra arguments, checked before anything is written
(while the export's query runs, which a bad option cancels: export.py).

Beam itself drops unknown options with a log line and exits the process (argparse) on a
malformed one; here both become an ``ExportError`` naming the option. ``--runner dask`` and
``--runner DaskRunner`` are aliases for Beam's DaskRunner, which has no short name of its own.
"""

from __future__ import annotations

from typing import NoReturn, Sequence

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, _BeamArgumentParser
from apache_beam.runners.runner import PipelineRunner, create_runner

from predserve.errors import ExportError

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
RUNNER_ALIASES = {"dask": DASK_RUNNER, "daskrunner": DASK_RUNNER}
RUNNER_HINT = "use DirectRunner, DataflowRunner, dask (Beam's DaskRunner) or a PipelineRunner's class path"
OPTION_EXAMPLES = "--runner, --project, --region, --temp_location, --direct_num_workers, --dask_client_address"


def pipeline_options(beam_args: Sequence[str]) -> tuple[PipelineOptions, PipelineRunner]:
    """Validated options and the runner they name; every problem is an ``ExportError``."""
    args = _with_runner_alias(list(beam_args))
    dask = _runner_name(args) == DASK_RUNNER
    if dask or any(a.startswith("--dask_") for a in args):
        _import_dask_runner()
    _check_options(args)
    if dask and not any(a.split("=", 1)[0] in ("--dask_npartitions", "--dask_partition_size") for a in args):
        # DaskRunner packs 128 work items into one partition by default, so the export's
        # handful of work items would all land on one worker: one item per partition.
        args.append("--dask_partition_size=1")
    options = PipelineOptions(args)
    name = options.view_as(StandardOptions).runner or "DirectRunner"
    try:
        runner = create_runner(name)
    except ImportError:
        if "dataflow" in name.lower():
            raise ExportError(f"--runner {name} needs Beam's Google Cloud extras: pip install 'predserve[dataflow]'") from None
        raise ExportError(f"unknown --runner {name}: {RUNNER_HINT}") from None
    except (ValueError, AttributeError):
        raise ExportError(f"unknown --runner {name}: {RUNNER_HINT}") from None
    return options, runner


def _runner_name(args: list[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg == "--runner" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--runner="):
            return arg.split("=", 1)[1]
    return None


def _with_runner_alias(args: list[str]) -> list[str]:
    """``--runner dask`` / ``--runner=DaskRunner`` become the DaskRunner's class path."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--runner" and i + 1 < len(out):
            out[i + 1] = RUNNER_ALIASES.get(out[i + 1].lower(), out[i + 1])
        elif arg.startswith("--runner="):
            value = arg.split("=", 1)[1]
            out[i] = "--runner=" + RUNNER_ALIASES.get(value.lower(), value)
    return out


def _import_dask_runner() -> None:
    """Importing Beam's DaskRunner registers its options (--dask_client_address, ...)."""
    try:
        import dask.distributed  # noqa: F401  (first: Beam's module half-imports without it)
        import apache_beam.runners.dask.dask_runner  # noqa: F401
    except ImportError:
        raise ExportError("--runner dask needs Dask: pip install 'predserve[dask]'") from None


class _OptionParser(_BeamArgumentParser):
    """Beam's own option parser, raising instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise ExportError(f"bad pipeline option: {message}")


def _check_options(args: list[str]) -> None:
    """Parse with every option class Beam knows, as Beam does, and refuse what it would drop."""
    parser = _OptionParser(allow_abbrev=False, add_help=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(args)
    if unknown:
        flags = [a.split("=", 1)[0] for a in unknown if a.startswith("-")] or unknown
        raise ExportError(f"unknown pipeline option {', '.join(flags)}: Beam options are --name VALUE or --name=VALUE (e.g. {OPTION_EXAMPLES})")
