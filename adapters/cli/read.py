"""Read commands: look into the log without changing it — tail, audit, sessions, memories,
stats. Each builds plain rows (stable snake_case keys) and hands them to `Output`, so the
table and the `--json`/`--jsonl` forms always carry the same data."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from adapters.cli.common import find_layer, layers, parse_time
from adapters.cli.output import Output, plain
from adapters.cli.registry import command
from eventlog import Event, EventStore, StoreUnavailable, redact_url
from eventlog.fallback import FallbackStore
from eventlog.jsonl import JsonlStore
from projections import ActorsProjection, ProjectionRunner, all_projections, query_memories, query_sessions
from projections.audit import audit

EVENT_COLUMNS = ("position", "at", "stream", "type", "agent_id", "team_id", "user_id", "run_id", "summary")


def summary(event: Event) -> str:
    """A short human description of a payload: its most telling field."""
    p: Any = event.payload
    if event.type == "run.recorded":
        return f"run {p.run_id}: {str(p.run.get('content') or p.run.get('status') or '')[:80]}"
    if event.type == "message.appended":
        return f"{p.role}: {str(p.content)[:80]}"
    for name in ("memory", "content", "name", "set", "summary", "state", "step", "key", "user_id"):
        value = getattr(p, name, None)
        if value not in (None, {}, []):
            text = json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, (dict, list)) else value
            return f"{name}={text}"
    return ""


def event_row(event: Event) -> dict[str, Any]:
    a = event.actor
    return {"position": event.position, "partition": event.partition, "at": event.at,
            "stream": event.stream, "version": event.version, "type": event.type, "id": event.id,
            "agent_id": a.agent_id, "team_id": a.team_id, "workflow_id": a.workflow_id, "user_id": a.user_id,
            "session_id": a.session_id, "run_id": a.run_id, "summary": summary(event)}


# --- tail ---------------------------------------------------------------------------------


def _tail_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--follow", "-f", action="store_true", help="keep following new events until Ctrl-C")
    p.add_argument("--stream", help="only streams starting with this prefix (e.g. session/, user/alice)")
    p.add_argument("--type", action="append", help="only this event type (repeatable)")
    p.add_argument("--after", help="start after this position (N, or P:N,P:N on a partitioned store)")
    p.add_argument("--limit", type=_positive, help="at most this many events")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


@command("tail", "events in log order; --follow keeps printing new ones as they are appended", _tail_args)
def cmd_tail(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    types = set(args.type) if args.type else None
    if not args.follow:
        events = (e for e in store.read_all(after=args.after)
                  if (not args.stream or e.stream.startswith(args.stream)) and (types is None or e.type in types))
        out.rows((event_row(e) for e in _limited(events, args.limit)), EVENT_COLUMNS, title="events", key="events")
        return 0
    # Following is a stream: JSON modes print one object per line, people get one line per
    # event. Ctrl-C sets `stop` instead of raising, so the loop ends cleanly with exit 0.
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    followed = store.tail(after=args.after, prefix=args.stream or "", types=args.type, stop=stop)
    for event in _limited(followed, args.limit):
        row = event_row(event)
        line = json.dumps(plain(row), ensure_ascii=False) if out.machine else _follow_line(plain(row))
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    return 0


def _limited(events: Iterator[Event], limit: int | None) -> Iterator[Event]:
    for n, event in enumerate(events, start=1):
        yield event
        if limit is not None and n >= limit:
            return


def _follow_line(r: dict[str, Any]) -> str:
    who = "/".join(str(r[k]) for k in ("agent_id", "team_id", "user_id") if r[k]) or "-"
    return f"{r['position']:>7}  {r['at'][:19]}  {r['stream']:<28} {r['type']:<24} {who:<24} {r['summary']}"


# --- audit --------------------------------------------------------------------------------


def _audit_args(p: argparse.ArgumentParser) -> None:
    for flag in ("agent", "team", "user", "session", "run"):
        p.add_argument(f"--{flag}", help=f"only events by this {flag} id")
    p.add_argument("--since", help="ISO time (inclusive)")
    p.add_argument("--until", help="ISO time (inclusive)")
    p.add_argument("--type", action="append", help="only this event type (repeatable)")


@command("audit", "who wrote what, when, in which run (filters combine)", _audit_args)
def cmd_audit(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    events = audit(store, agent_id=args.agent, team_id=args.team, user_id=args.user, session_id=args.session,
                   run_id=args.run, since=parse_time(args.since), until=parse_time(args.until),
                   types=set(args.type) if args.type else None)
    out.rows((event_row(e) for e in events), EVENT_COLUMNS, title="audit", key="events")
    return 0


# --- sessions and memories ----------------------------------------------------------------


def _runner(store: EventStore, *names: str) -> ProjectionRunner:
    """Fold the projections these commands read (snapshots speed it up; none are written:
    a read command never changes the store)."""
    wanted = [p for p in all_projections() if p.name in names]
    runner = ProjectionRunner(store, wanted)
    runner.catch_up()
    return runner


def _sessions_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", help="only this user's sessions")
    p.add_argument("--agent", help="only this agent's sessions")
    p.add_argument("--type", choices=["agent", "team", "workflow"], help="only this kind of session")
    p.add_argument("--limit", type=_positive, help="at most this many (newest first)")


@command("sessions", "sessions, newest first, with their run counts", _sessions_args)
def cmd_sessions(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    runner = _runner(store, "sessions", "conversation")
    with runner.reading_all() as states:
        rows, total = query_sessions(states["sessions"], user_id=args.user, agent_id=args.agent,
                                     session_type=args.type, limit=args.limit)
        conv = states["conversation"].sessions
        data = [{"session_id": r.session_id, "type": r.session_type, "user_id": r.user_id, "agent_id": r.agent_id,
                 "team_id": r.team_id, "workflow_id": r.workflow_id, "name": r.name,
                 "runs": len(conv[r.session_id].runs) if r.session_id in conv else 0,
                 "created_at": _iso(r.created_at), "updated_at": _iso(r.updated_at), "state": r.state,
                 "forked_from": r.forked_from}
                for r in rows]
    out.rows(data, ("session_id", "type", "user_id", "agent_id", "team_id", "runs", "updated_at", "name"),
             title="sessions", key="sessions", extra={"total": total})
    return 0


def _memories_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", required=True, help="whose memories")
    p.add_argument("--topic", help="only memories with this topic")
    p.add_argument("--search", help="only memories containing this text (case-insensitive)")
    p.add_argument("--limit", type=_positive, help="at most this many")


@command("memories", "what agents remember about a user: who wrote it, when, how often it changed",
         _memories_args)
def cmd_memories(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    runner = _runner(store, "memories")
    with runner.reading("memories") as state:
        rows, total = query_memories(state, user_id=args.user, topics=[args.topic] if args.topic else None,
                                     search_content=args.search, limit=args.limit)
        data = [{"memory_id": r.memory_id, "user_id": r.user_id, "memory": r.memory, "topics": r.topics,
                 "created_by": r.created_by, "updated_by": r.updated_by, "changes": r.changes,
                 "created_at": _iso(r.created_at), "updated_at": _iso(r.updated_at)} for r in rows]
    out.rows(data, ("memory", "topics", "created_by", "updated_by", "changes", "updated_at", "memory_id"),
             title=f"memories of {args.user}", key="memories", extra={"total": total})
    return 0


# --- stats --------------------------------------------------------------------------------


@command("stats", "events, streams, bytes, per type and per actor, and the store's health")
def cmd_stats(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    started = time.monotonic()
    by_type: Counter[str] = Counter()
    streams: set[str] = set()
    actors = ActorsProjection()
    state = actors.initial()
    n = 0
    for event in store.read_all():
        n += 1
        by_type[event.type] += 1
        streams.add(event.stream)
        actors.apply(state, event)
    file_store = find_layer(store, JsonlStore)
    issues = _health(store)
    doc: dict[str, Any] = {
        "url": redact_url(store.url), "backend": type(store).__name__, "events": n, "streams": len(streams),
        "bytes": file_store.size_bytes() if file_store is not None else None,
        "redis_used_memory": _redis_memory(store),
        "health": "ok" if not issues else "warn", "issues": issues,
        "by_type": dict(by_type.most_common()),
        "by_actor": {k: v.events for k, v in sorted(state.actors.items())},
        "scan_seconds": round(time.monotonic() - started, 3),
    }
    if out.machine:
        out.document(doc)
        return 0
    head = {k: v for k, v in doc.items() if k not in ("by_type", "by_actor", "issues") and v is not None}
    out.document({**head, "issues": "; ".join(issues) or "none"}, title="store")
    out.rows([{"type": t, "events": c} for t, c in by_type.most_common()], ("type", "events"), title="by type")
    out.rows([{"actor": k, "events": v} for k, v in doc["by_actor"].items()], ("actor", "events"), title="by actor")
    return 0


def _health(store: EventStore) -> list[str]:
    """Cheap health signals (the full check is `eventlog doctor`)."""
    issues: list[str] = []
    fallback = find_layer(store, FallbackStore)
    if fallback is not None:
        pending = fallback.pending()
        if pending:
            issues.append(f"{pending} fallback events wait for Redis (eventlog sync)")
    for layer in layers(store):
        if isinstance(layer, JsonlStore) and (layer.recovered or layer.corrupt):
            issues.append(f"{layer.path}: {len(layer.recovered)} torn tails, {len(layer.corrupt)} corrupt lines")
    return issues


def _redis_memory(store: EventStore) -> int | None:
    for layer in layers(store):
        info = getattr(layer, "info", None)
        if callable(info):
            try:
                used = info().get("used_memory")
            except StoreUnavailable:
                return None
            return int(used) if used is not None else None
    return None


def _iso(epoch: int | None) -> datetime | None:
    """Agno's epoch seconds as a UTC time (ISO in JSON, `YYYY-MM-DD HH:MM:SS` in tables)."""
    return datetime.fromtimestamp(epoch, timezone.utc) if epoch else None
