"""Read commands: look into the log without changing it (tail, audit, sessions, memories,
replay, state, diff, stats)."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from adapters.cli.output import Output
from eventlog import Event, EventStore, redact_url
from eventlog.names import session_stream
from projections import (
    ActorsProjection,
    ProjectionRunner,
    all_projections,
    diff,
    query_memories,
    query_sessions,
    session_at,
)
from projections.audit import audit
from projections.timetravel import parse_point


class UserError(Exception):
    """A mistake in what the user asked: printed as one line with a hint, exit code 2."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"bad time {text!r}", "use ISO 8601, e.g. 2026-11-24T20:00:00Z or 2026-11-24") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def summary(event: Event) -> str:
    p: Any = event.payload
    for name in ("memory", "content", "name", "set", "summary", "state", "step", "key", "user_id"):
        value = getattr(p, name, None)
        if value not in (None, {}, []):
            return f"{name}={value}"
    if event.type == "run.recorded":
        return f"run {p.run_id}: {str(p.run.get('content') or '')[:60]}"
    return ""


def event_row(event: Event) -> dict[str, Any]:
    a = event.actor
    return {"position": event.position, "partition": event.partition, "at": event.at.isoformat(),
            "stream": event.stream, "version": event.version, "type": event.type, "id": event.id,
            "agent_id": a.agent_id, "team_id": a.team_id, "user_id": a.user_id, "session_id": a.session_id,
            "run_id": a.run_id, "summary": summary(event)}


EVENT_COLUMNS = ("position", "at", "stream", "type", "agent_id", "team_id", "user_id", "run_id", "summary")


def cmd_tail(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    types = set(args.type or []) or None
    rows = (event_row(e) for e in store.read_all(after=args.after) if _wanted(e, args.stream, types))
    if args.limit:
        rows = (r for i, r in enumerate(rows) if i < args.limit)
    if not args.follow:
        out.rows(rows, EVENT_COLUMNS, title="events", key="events")
        return 0
    out.jsonl = out.jsonl or out.json  # following is a stream: one line per event
    out.json = False
    try:
        for event in store.tail(after=args.after, prefix=args.stream or "", types=args.type):
            if out.jsonl:
                out.rows([event_row(event)], EVENT_COLUMNS)
            else:
                r = event_row(event)
                out.out.print(" ".join(str(r[c] or "-") for c in EVENT_COLUMNS), markup=False)
    except KeyboardInterrupt:
        return 0
    return 0


def _wanted(event: Event, prefix: str | None, types: set[str] | None) -> bool:
    return (not prefix or event.stream.startswith(prefix)) and (types is None or event.type in types)


def cmd_audit(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    events = audit(store, agent_id=args.agent, team_id=args.team, user_id=args.user, session_id=args.session,
                   run_id=args.run, since=parse_time(args.since), until=parse_time(args.until),
                   types=set(args.type) if args.type else None)
    out.rows((event_row(e) for e in events), EVENT_COLUMNS, title="audit", key="events")
    return 0


def _runner(store: EventStore, *names: str) -> ProjectionRunner:
    wanted = [p for p in all_projections() if not names or p.name in names]
    runner = ProjectionRunner(store, wanted)
    runner.catch_up()
    return runner


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


def cmd_memories(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    runner = _runner(store, "memories")
    with runner.reading("memories") as state:
        rows, total = query_memories(state, user_id=args.user, topics=[args.topic] if args.topic else None,
                                     search_content=args.search, limit=args.limit)
        data = [{"memory_id": r.memory_id, "user_id": r.user_id, "memory": r.memory, "topics": r.topics,
                 "created_by": r.created_by, "updated_by": r.updated_by, "changes": r.changes,
                 "created_at": _iso(r.created_at), "updated_at": _iso(r.updated_at)} for r in rows]
    out.rows(data, ("memory", "topics", "created_by", "updated_by", "changes", "updated_at", "memory_id"),
             title=f"memories of {args.user}" if args.user else "memories", key="memories", extra={"total": total})
    return 0


def _require_session(store: EventStore, session_id: str) -> None:
    if store.head(session_stream(session_id)).version == 0:
        raise UserError(f"unknown session {session_id!r}", "list sessions with: eventlog sessions")


def cmd_replay(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    _require_session(store, args.session)
    turns: list[dict[str, Any]] = []
    for event in store.read(session_stream(args.session)):
        p: Any = event.payload
        if event.type == "run.recorded":
            run = p.run
            turns.append({"turn": len(turns) + 1, "at": event.at.isoformat(), "kind": "run",
                          "agent_id": run.get("agent_id") or event.actor.agent_id,
                          "team_id": run.get("team_id") or event.actor.team_id, "run_id": p.run_id,
                          "input": _run_input(run), "output": run.get("content"), "status": run.get("status")})
        elif event.type == "message.appended":
            turns.append({"turn": len(turns) + 1, "at": event.at.isoformat(), "kind": "message",
                          "agent_id": event.actor.agent_id, "team_id": None, "run_id": p.run_id,
                          "input": p.content if p.role == "user" else None,
                          "output": p.content if p.role != "user" else None, "status": p.role})
    # a run recorded twice (started, then completed) is one turn: keep its last record
    latest: dict[str, dict[str, Any]] = {}
    ordered: list[dict[str, Any]] = []
    for t in turns:
        key = t["run_id"] if t["kind"] == "run" else f"m{t['turn']}"
        if key not in latest:
            ordered.append(t)
        latest[key] = t
    rows = [{**latest[t["run_id"] if t["kind"] == "run" else f"m{t['turn']}"], "turn": i}
            for i, t in enumerate(ordered, start=1)]
    out.rows(rows, ("turn", "at", "agent_id", "team_id", "input", "output"), title=f"session {args.session}",
             key="turns", extra={"session_id": args.session})
    return 0


def _run_input(run: dict[str, Any]) -> Any:
    value = run.get("input")
    if isinstance(value, dict):
        return value.get("input_content") or value.get("content") or value
    if value is None:
        for message in run.get("messages") or []:
            if isinstance(message, dict) and message.get("role") == "user":
                return message.get("content")
    return value


def _point(text: str) -> Any:
    point = parse_point(text)
    return point


def cmd_state(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    _require_session(store, args.session)
    point = _point(args.at)
    sessions, conv = session_at(store, args.session, point)
    row = sessions.sessions.get(args.session)
    runs = conv.sessions[args.session].runs if args.session in conv.sessions else []
    doc = {"session_id": args.session, "at": str(point), "exists": row is not None,
           "name": row.name if row else None, "user_id": row.user_id if row else None,
           "state": row.state if row else {}, "summary": row.summary if row else None, "runs": len(runs),
           "last_run": (runs[-1].run.get("content") if runs else None)}
    out.document(doc, title=f"session {args.session} at {args.at}")
    return 0


def cmd_diff(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    _require_session(store, args.session)
    changes = diff(store, _point(args.from_point), _point(args.to_point), session_id=args.session)
    rows = [{"kind": c.kind, "key": c.key, "before": c.before, "after": c.after} for c in changes]
    out.rows(rows, ("kind", "key", "before", "after"), title=f"{args.from_point} -> {args.to_point}", key="changes")
    return 0


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
    size = getattr(store, "size_bytes", None)
    doc = {"url": redact_url(store.url), "events": n, "streams": len(streams),
           "bytes": size() if callable(size) else None, "by_type": dict(by_type.most_common()),
           "by_actor": {k: v.events for k, v in sorted(state.actors.items())},
           "pending_fallback": store.pending() if hasattr(store, "pending") else None,
           "scan_seconds": round(time.monotonic() - started, 3)}
    if out.machine:
        out.document(doc)
        return 0
    out.document({k: v for k, v in doc.items() if k not in ("by_type", "by_actor")}, title="store")
    out.rows([{"type": t, "events": c} for t, c in by_type.most_common()], ("type", "events"), title="by type")
    out.rows([{"actor": k, "events": v} for k, v in doc["by_actor"].items()], ("actor", "events"), title="by actor")
    return 0


def _iso(epoch: int | None) -> str | None:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat() if epoch else None

