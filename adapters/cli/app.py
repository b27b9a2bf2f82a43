"""`eventlog`: argument wiring, the store to open, and turning errors into one line.

Subcommands come from `registry.COMMANDS`, filled by importing `COMMAND_MODULES`. Global
options (`--url`, `--fallback`, `--json`, `--jsonl`) are accepted before or after the
subcommand. A user mistake (unknown session, bad time or point, unreachable store, bad URL)
prints the cause and a hint on stderr and exits 2 — never a traceback; `verify` and `doctor`
exit 1 when they find a problem. Passwords in URLs are never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from adapters.cli.common import UserError, find_layer
from adapters.cli.output import Output
from adapters.cli.registry import COMMANDS
from eventlog import EventLogError, EventStore, InvalidURL, StoreUnavailable, open_store, redact_url
from eventlog.fallback import FallbackStore
from eventlog.open import default_url
from projections.timetravel import PointNotFound

COMMAND_MODULES = (
    "adapters.cli.read",
    "adapters.cli.history",
    "adapters.cli.health",
    "adapters.cli.readmodels",
    "adapters.cli.transfer",
    "adapters.cli.demo",
    "adapters.cli.bench",
    "adapters.cli.ui",
)
"""Modules that register subcommands when imported, in help order. A module that cannot be
imported (an optional dependency missing) only loses its own commands."""

URL_HINT = "store URLs: a directory path, file:///dir, memory://, redis://[:password@]host:6379/0, rediss://..."


def load_commands() -> None:
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # pragma: no cover - every dependency is installed in tests
            logging.getLogger("eventlog.cli").debug("commands of %s unavailable: %s", name, exc)


def _globals(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The global options. On subcommands their default is SUPPRESS, so a value given before
    the subcommand is not overwritten by the subparser's default."""
    none: Any = None if top else argparse.SUPPRESS
    false: Any = False if top else argparse.SUPPRESS
    parser.add_argument("--url", default=none,
                        help="store URL (default: EVENTLOG_URL, else REDIS_URL with a file fallback, else MEMORY_DIR)")
    parser.add_argument("--fallback", default=none, metavar="DIR",
                        help="file store to fall back to while Redis is away (with a redis:// URL)")
    parser.add_argument("--json", action="store_true", default=false, help="one JSON document on stdout")
    parser.add_argument("--jsonl", action="store_true", default=false, help="JSON lines: one object per row")


def build_parser() -> argparse.ArgumentParser:
    load_commands()
    parser = argparse.ArgumentParser(
        prog="eventlog", description="Look into, check and move an agent memory log (agno-eventlog).",
        epilog="Global options work before or after the command. Exit codes: 0 ok, 1 problem found, 2 usage error.")
    _globals(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for spec in COMMANDS:
        p = sub.add_parser(spec.name, help=spec.help, description=spec.help)
        _globals(p, top=False)
        if spec.arguments is not None:
            spec.arguments(p)
        p.set_defaults(spec=spec)
    return parser


def open_configured(args: argparse.Namespace) -> EventStore:
    """The store named by --url (+ --fallback), else the one the environment configures,
    exactly as `open_store(None)` chooses it."""
    url, fallback = args.url, args.fallback
    if url is None:
        url, env_fallback = default_url()
        fallback = fallback or env_fallback
    return open_store(url, fallback=fallback)


def main(argv: Sequence[str] | None = None) -> int:
    # The library logs what it recovers from (Redis away, torn tails); here the outcome is
    # reported once, as the error line, so its warnings stay quiet unless asked for.
    level = os.environ.get("EVENTLOG_LOG_LEVEL", "ERROR").upper()
    logging.basicConfig(level=getattr(logging, level, logging.ERROR),
                        format="eventlog: %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.json and args.jsonl:
        return _fail("--json and --jsonl are exclusive", "pick one: a JSON document, or JSON lines")
    out = Output(json_mode=args.json, jsonl=args.jsonl)
    spec = args.spec
    store: EventStore | None = None
    try:
        if spec.run_plain is not None:
            return int(spec.run_plain(args, out))
        store = open_configured(args)
        return int(spec.run(store, args, out))
    except UserError as exc:
        return _fail(str(exc), exc.hint)
    except InvalidURL as exc:
        return _fail(str(exc), URL_HINT)
    except StoreUnavailable as exc:
        hint = "is the server running and the URL right? `eventlog doctor` checks the store"
        if store is not None and find_layer(store, FallbackStore) is not None:
            hint = "Redis is down: appends go to the file fallback; run `eventlog sync` once it is back"
        return _fail(str(exc), hint)
    except PointNotFound as exc:
        return _fail(str(exc), "a point is an event id, a position (N) or an ISO time; ids: eventlog tail --json")
    except EventLogError as exc:  # invalid ids, stream names, concurrency, corrupt data ...
        return _fail(str(exc), f"see: eventlog {args.command} --help; `eventlog doctor` checks the store")
    except OSError as exc:  # a file named on the command line that cannot be read or written
        if isinstance(exc, BrokenPipeError):  # `eventlog tail | head`: the reader left, fine
            with contextlib.suppress(OSError):  # no second error when Python flushes stdout at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        return _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), "check the path and permissions")
    except KeyboardInterrupt:
        return 130
    finally:
        if store is not None:
            with contextlib.suppress(Exception):  # closing must never mask the real outcome
                store.close()


def _fail(message: str, hint: str) -> int:
    """One line with the cause (passwords redacted), one with the hint; exit code 2."""
    first = redact_url(" ".join(message.split()))
    sys.stderr.write(f"eventlog: {first}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")
    return 2
