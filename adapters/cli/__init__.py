"""The `eventlog` command line: `main` is the console script (see `adapters/cli/app.py`).

Commands register themselves in `adapters.cli.registry.COMMANDS`; see `registry.register`."""

from adapters.cli.app import build_parser, main
from adapters.cli.registry import COMMANDS, Command, register

__all__ = ["COMMANDS", "Command", "build_parser", "main", "register"]
