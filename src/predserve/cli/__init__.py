"""The ``predserve`` command line: one module per group of commands, each command a thin call into its stage.

``app`` holds the group; importing the command modules registers their commands on it. Each
command imports its stage inside its body, so ``predserve --help`` and ``predserve serve``
start without the warehouse or Beam.
"""

from predserve.cli import access, demo, export, serving, snapshots, updates, warehouse  # noqa: F401  (registers the commands)
from predserve.cli.app import main

__all__ = ["main"]
