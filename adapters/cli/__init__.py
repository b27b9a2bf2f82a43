"""The `eventlog` command line (see `adapters/cli/app.py`)."""

from adapters.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
