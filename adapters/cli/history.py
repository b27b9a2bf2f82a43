"""History commands: a session's conversation as stored (replay), the session at an earlier
point (state), what changed between two points (diff), and continuing from an earlier point
in a new session (fork). All read the log only — no model is ever called — except `fork`,
which appends the new session's stream and leaves the original untouched."""

from __future__ import annotations

import argparse
from typing import Any

from adapters.cli.common import point, require_session
from adapters.cli.output import Output
from adapters.cli.registry import command
from eventlog import EventStore
from eventlog.names import session_stream
from projections import diff, fork_session, session_at


def _session_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--session", required=True, help="session id (see: eventlog sessions)")


@command("replay", "a session's conversation as stored, turn by turn (no model call)", _session_arg)
def cmd_replay(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    require_session(store, args.session)
    turns: list[dict[str, Any]] = []
    by_run: dict[str, int] = {}  # a run recorded twice (started, then completed) is one turn
    for event in store.read(session_stream(args.session)):
        p: Any = event.payload
        if event.type == "run.recorded":
            run = p.run
            turn = {"kind": "run", "at": event.at, "run_id": p.run_id,
                    "agent_id": run.get("agent_id") or event.actor.agent_id,
                    "team_id": run.get("team_id") or event.actor.team_id,
                    "input": _run_input(run), "output": run.get("content"), "status": run.get("status"),
                    "messages": len(run.get("messages") or [])}
            if p.run_id in by_run:
                turns[by_run[p.run_id]] = {**turn, "at": turns[by_run[p.run_id]]["at"]}
            else:
                by_run[p.run_id] = len(turns)
                turns.append(turn)
        elif event.type == "run.deleted" and p.run_id in by_run:
            turns[by_run[p.run_id]]["status"] = "deleted"
        elif event.type == "message.appended":
            user = p.role == "user"
            turns.append({"kind": "message", "at": event.at, "run_id": p.run_id,
                          "agent_id": p.name or event.actor.agent_id, "team_id": event.actor.team_id,
                          "input": p.content if user else None, "output": None if user else p.content,
                          "status": p.role, "messages": 1})
    rows = [{"turn": i, **t} for i, t in enumerate(turns, start=1)]
    out.rows(rows, ("turn", "at", "kind", "agent_id", "input", "output"), title=f"session {args.session}",
             key="turns", extra={"session_id": args.session})
    return 0


def _run_input(run: dict[str, Any]) -> Any:
    """What the user said in a run: Agno keeps it in `input` (a dict) or the user message."""
    value = run.get("input")
    if isinstance(value, dict):
        return value.get("input_content") or value.get("content") or value
    if value is None:
        for message in run.get("messages") or []:
            if isinstance(message, dict) and message.get("role") == "user":
                return message.get("content")
    return value


def _state_args(p: argparse.ArgumentParser) -> None:
    _session_arg(p)
    p.add_argument("--at", required=True, help="event id, position (N) or ISO time")


@command("state", "a session as it was at an event id, a position or an ISO time", _state_args)
def cmd_state(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    require_session(store, args.session)
    at = point(args.at)
    sessions, conv = session_at(store, args.session, at)
    row = sessions.sessions.get(args.session)
    runs = conv.sessions[args.session].runs if args.session in conv.sessions else []
    doc = {"session_id": args.session, "at": str(at), "exists": row is not None,
           "name": row.name if row else None, "user_id": row.user_id if row else None,
           "agent_id": row.agent_id if row else None, "state": row.state if row else {},
           "summary": row.summary if row else None, "runs": len(runs),
           "run_ids": [r.run_id for r in runs],
           "last_output": runs[-1].run.get("content") if runs else None}
    out.document(doc, title=f"session {args.session} at {args.at}")
    return 0


def _diff_args(p: argparse.ArgumentParser) -> None:
    _session_arg(p)
    p.add_argument("from_point", metavar="FROM", help="event id, position or ISO time")
    p.add_argument("to_point", metavar="TO", help="event id, position or ISO time")


@command("diff", "what changed in a session between two points", _diff_args)
def cmd_diff(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    require_session(store, args.session)
    changes = diff(store, point(args.from_point), point(args.to_point), session_id=args.session)
    rows = [{"kind": c.kind, "key": c.key, "before": c.before, "after": c.after} for c in changes]
    out.rows(rows, ("kind", "key", "before", "after"), title=f"{args.from_point} -> {args.to_point}", key="changes",
             extra={"session_id": args.session, "from": args.from_point, "to": args.to_point})
    return 0


def _fork_args(p: argparse.ArgumentParser) -> None:
    _state_args(p)
    p.add_argument("--new", help="id of the new session (default: generated)")


@command("fork", "continue a session from an earlier point in a new session (prints its id)", _fork_args)
def cmd_fork(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    require_session(store, args.session)
    new_id = fork_session(store, args.session, point(args.at), args.new)
    if out.machine:
        out.document({"session_id": new_id, "forked_from": args.session, "at": args.at})
    else:  # the id alone on stdout, so `S=$(eventlog fork ...)` works
        out.err.print(f"forked {args.session} at {args.at} into:", markup=False)
        out.out.print(new_id, markup=False)
    return 0
