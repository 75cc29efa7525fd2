"""``python -m predserve.cli``, as the demo and the tests start the CLI."""

from predserve.cli import main

main()
