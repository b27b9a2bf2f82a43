"""The command registry: each command module registers its subcommands here.

`app.build_parser` builds argparse from `COMMANDS` in registration order, so a new command
(e.g. one that needs an optional dependency such as Agno) is one module that calls
`register(...)` at import time plus one entry in `app.COMMAND_MODULES` — no edits to the
argument wiring or the error handling, which every command shares.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from adapters.cli.output import Output
from eventlog import EventStore

StoreCommand = Callable[[EventStore, argparse.Namespace, Output], int]
"""Runs against the configured store (opened, and closed afterwards, by `app.main`)."""

PlainCommand = Callable[[argparse.Namespace, Output], int]
"""Runs without a store opened for it (it opens what it needs itself, e.g. the demo)."""


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, one-line help, its own arguments and what it runs.

    Exactly one of `run` (gets the configured store) and `run_plain` (gets no store) is set."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    run: StoreCommand | None = None
    run_plain: PlainCommand | None = None

    def __post_init__(self) -> None:
        if (self.run is None) == (self.run_plain is None):
            raise ValueError(f"command {self.name!r}: set exactly one of run and run_plain")


COMMANDS: list[Command] = []


def register(command: Command) -> Command:
    """Add (or replace, by name) a subcommand. Returns it, so modules can keep a handle."""
    for i, existing in enumerate(COMMANDS):
        if existing.name == command.name:
            COMMANDS[i] = command
            return command
    COMMANDS.append(command)
    return command


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None] | None = None,
            ) -> Callable[[StoreCommand], StoreCommand]:
    """Decorator form of `register` for store commands: `@command("tail", "...", _tail_args)`."""

    def wrap(fn: StoreCommand) -> StoreCommand:
        register(Command(name=name, help=help, arguments=arguments, run=fn))
        return fn

    return wrap
