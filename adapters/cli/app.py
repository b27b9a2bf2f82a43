"""`eventlog`: the command line. Argument wiring, the store to open, and error handling.

A user mistake (unknown session, bad time, unreachable store, bad URL) prints one line with
the cause and a hint and exits 2 — never a traceback. `verify` and `doctor` exit 1 when they
find a problem.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from adapters.cli import ops, read
from adapters.cli.output import Output
from adapters.cli.read import UserError
from eventlog import EventLogError, EventStore, InvalidURL, StoreUnavailable, open_store, redact_url
from eventlog.fallback import FallbackStore
from eventlog.open import default_url
from projections.timetravel import PointNotFound

Command = Callable[[EventStore, argparse.Namespace, Output], int]


def _globals(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument("--url", default=default,
                        help="store URL (default: EVENTLOG_URL, REDIS_URL + file fallback, MEMORY_DIR)")
    parser.add_argument("--fallback", default=default, help="file store directory to fall back to (with redis URLs)")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="one JSON document on stdout")
    parser.add_argument("--jsonl", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="JSON lines, one object per row")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventlog", description="Look into (and replay) an agent memory log.")
    _globals(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name: str, help: str, fn: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        _globals(p, suppress=True)
        p.set_defaults(fn=fn)
        return p

    command("demo", "run the demo: agents share a memory, restart, resume (file store by default)", ops.cmd_demo)
    p = command("tail", "events as they are appended", read.cmd_tail)
    p.add_argument("--follow", "-f", action="store_true", help="keep following new events")
    p.add_argument("--stream", help="only streams starting with this prefix")
    p.add_argument("--type", action="append", help="only this event type (repeatable)")
    p.add_argument("--after", help="start after this position")
    p.add_argument("--limit", type=int, help="at most this many events")
    p = command("audit", "who wrote what, when, in which run", read.cmd_audit)
    for flag in ("agent", "team", "user", "session", "run"):
        p.add_argument(f"--{flag}", help=f"only events by this {flag}")
    p.add_argument("--since", help="ISO time")
    p.add_argument("--until", help="ISO time")
    p.add_argument("--type", action="append", help="only this event type (repeatable)")
    p = command("sessions", "sessions, newest first", read.cmd_sessions)
    p.add_argument("--user")
    p.add_argument("--agent")
    p.add_argument("--type", choices=["agent", "team", "workflow"])
    p.add_argument("--limit", type=int)
    p = command("memories", "what agents remember about a user", read.cmd_memories)
    p.add_argument("--user", required=True)
    p.add_argument("--topic")
    p.add_argument("--search")
    p.add_argument("--limit", type=int)
    p = command("replay", "the conversation as stored, turn by turn (no model call)", read.cmd_replay)
    p.add_argument("--session", required=True)
    p = command("state", "a session as it was at an event id, position or ISO time", read.cmd_state)
    p.add_argument("--session", required=True)
    p.add_argument("--at", required=True, help="event id, position or ISO time")
    p = command("diff", "what changed in a session between two points", read.cmd_diff)
    p.add_argument("--session", required=True)
    p.add_argument("from_point", metavar="FROM")
    p.add_argument("to_point", metavar="TO")
    p = command("fork", "continue a session from an earlier point in a new session", ops.cmd_fork)
    p.add_argument("--session", required=True)
    p.add_argument("--at", required=True)
    p.add_argument("--new", help="id of the new session (default: generated)")
    p = command("verify", "check every hash, chain link and position; exit 1 on a break", ops.cmd_verify)
    p.add_argument("--resume", action="store_true", help="start from the newest checkpoint")
    p.add_argument("--expect-root", help="fail unless the final root equals this (printed by an earlier verify)")
    p.add_argument("--checkpoint", action="store_true", help="append a checkpoint after a clean verify")
    command("sync", "replay fallback events into Redis", ops.cmd_sync)
    command("stats", "events, streams, bytes, per type and per actor", read.cmd_stats)
    command("doctor", "check the configured store for risks to your data", ops.cmd_doctor)
    p = command("export", "the log as JSONL", ops.cmd_export)
    p.add_argument("--out", help="file to write (default: stdout)")
    p = command("import", "append a JSONL export (idempotent)", ops.cmd_import)
    p.add_argument("file", help="JSONL file, or - for stdin")
    return parser


def open_configured(args: argparse.Namespace) -> EventStore:
    url = args.url
    fallback = args.fallback
    if url is None:
        url, env_fallback = default_url()
        fallback = fallback or env_fallback
    return open_store(url, fallback=fallback)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(json_mode=getattr(args, "json", False), jsonl=getattr(args, "jsonl", False))
    store: EventStore | None = None
    try:
        if args.fn is ops.cmd_demo:
            return ops.cmd_demo(args.url, args, out)
        store = open_configured(args)
        return int(args.fn(store, args, out))
    except UserError as exc:
        return _fail(str(exc), exc.hint)
    except InvalidURL as exc:
        return _fail(str(exc), "store URLs: memory://, file:///dir or a path, redis://host:6379/0, rediss://...")
    except StoreUnavailable as exc:
        hint = "is the server running? `eventlog doctor` checks it"
        if isinstance(store, FallbackStore):
            hint = "Redis is down; appends go to the fallback file store, `eventlog sync` replays them later"
        return _fail(str(exc), hint)
    except PointNotFound as exc:
        return _fail(str(exc), "a point is an event id, a position (N) or an ISO time")
    except EventLogError as exc:
        return _fail(str(exc), "")
    except OSError as exc:  # a file named on the command line that cannot be read or written
        return _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), "check the path and permissions")
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    finally:
        if store is not None:
            with contextlib.suppress(Exception):  # closing must never mask the real outcome
                store.close()


def _fail(message: str, hint: str) -> int:
    sys.stderr.write(f"eventlog: {redact_url(message) if '://' in message else message}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")
    return 2
