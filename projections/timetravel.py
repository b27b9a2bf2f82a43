"""Time travel: any read model as it was just after a point, what changed between two points,
and forking a session from an earlier turn.

A point is an event id, a position (int, or "P:N,..." on a partitioned store), a `Cursor` or
a UTC `datetime`. "At a point" means: every event up to and including that event or
position, or every event whose time is at or before that time. The state comes from the same
`apply` the live runner uses, folded over exactly those events.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import Any, TypeVar

import msgspec

from eventlog import (
    Cursor,
    Event,
    EventStore,
    InvalidEvent,
    RunRecorded,
    SessionForked,
    new_event,
    new_id,
)
from eventlog.events import Actor
from eventlog.names import session_stream
from projections.conversation import ConversationProjection, ConversationState
from projections.fold import Projection
from projections.memories import MemoriesState, UserMemoriesProjection
from projections.sessions import SessionsProjection, SessionsState
from projections.workflows import WorkflowsProjection, WorkflowsState

S = TypeVar("S")
Point = Cursor | int | str | datetime

_POSITION = re.compile(r"^\d+$|^\d+:\d+(,\d+:\d+)*$")


class PointNotFound(InvalidEvent):
    """The event id given as a point is not in the log."""


def parse_point(text: str) -> Point:
    """A point from user text: a position, an ISO time, or else an event id."""
    text = text.strip()
    if _POSITION.match(text):
        return Cursor.of(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def cursor_of_event(store: EventStore, event_id: str) -> Cursor:
    """The cursor just after `event_id` in log order (scans the log once)."""
    cursor = Cursor()
    for event in store.read_all():
        cursor = cursor.advanced(event)
        if event.id == event_id:
            return cursor
    raise PointNotFound(f"no event with id {event_id!r} in {store.url}")


def point_filter(store: EventStore, point: Point) -> Callable[[Event], bool]:
    """A predicate: is this event at or before `point`?"""
    if isinstance(point, datetime):
        when = point if point.tzinfo else point.replace(tzinfo=timezone.utc)
        return lambda e: e.at <= when
    if isinstance(point, str) and not _POSITION.match(point.strip()):
        cursor = cursor_of_event(store, point)
    else:
        cursor = Cursor.of(point)
    return cursor.covers


def events_at(store: EventStore, point: Point, *, stream: str | None = None) -> Iterator[Event]:
    """The events that make up the state at `point` (one stream's, or the whole log's)."""
    keep = point_filter(store, point)
    source: Iterable[Event] = store.read(stream) if stream is not None else store.read_all()
    single = store.partitions == 1 and not isinstance(point, datetime)
    for event in source:
        if keep(event):
            yield event
        elif single:
            return  # positions only grow on a single partition: nothing later can qualify


def state_at(store: EventStore, projection: Projection[S], point: Point, *, stream: str | None = None) -> S:
    """The projection's state just after `point` (folding only `stream` when given)."""
    return projection.fold(events_at(store, point, stream=stream))


def session_at(store: EventStore, session_id: str, point: Point) -> tuple[SessionsState, ConversationState]:
    """One session's row and conversation as they were at `point` (folds one stream only)."""
    events = list(events_at(store, point, stream=session_stream(session_id)))
    return SessionsProjection().fold(events), ConversationProjection().fold(events)


# --- diff ---------------------------------------------------------------------------------


class Change(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One difference between two points: `kind` is what changed, `key` which one."""

    kind: str
    key: str
    before: Any = None
    after: Any = None


class Models(msgspec.Struct):
    sessions: SessionsState
    conversation: ConversationState
    memories: MemoriesState
    workflows: WorkflowsState


def models_at(store: EventStore, point: Point, *, stream: str | None = None) -> Models:
    """Every read model at `point`, folded in one pass over the events."""
    sessions, conversation = SessionsProjection(), ConversationProjection()
    memories, workflows = UserMemoriesProjection(), WorkflowsProjection()
    models = Models(sessions.initial(), conversation.initial(), memories.initial(), workflows.initial())
    for event in events_at(store, point, stream=stream):
        sessions.apply(models.sessions, event)
        conversation.apply(models.conversation, event)
        memories.apply(models.memories, event)
        workflows.apply(models.workflows, event)
    return models


def diff(store: EventStore, a: Point, b: Point, *, session_id: str | None = None) -> list[Change]:
    """What changed from point `a` to point `b`: memories added/changed/removed, runs added or
    removed, session state keys set/removed, names, summaries and workflow steps.

    With `session_id` only that session's stream is folded (cheap) and memories are left out
    unless they were written in it."""
    stream = session_stream(session_id) if session_id else None
    return diff_models(models_at(store, a, stream=stream), models_at(store, b, stream=stream))


def diff_models(old: Models, new: Models) -> list[Change]:
    changes: list[Change] = []
    _diff_keyed(changes, "memory", old.memories.memories, new.memories.memories, lambda m: m.memory)
    for sid in sorted(set(old.sessions.sessions) | set(new.sessions.sessions)):
        before, after = old.sessions.sessions.get(sid), new.sessions.sessions.get(sid)
        if before is None or after is None:
            changes.append(Change(kind="session.added" if before is None else "session.removed", key=sid,
                                  before=None if before is None else before.name,
                                  after=None if after is None else after.name))
        b_state = before.state if before is not None else {}
        a_state = after.state if after is not None else {}
        for key in sorted(set(b_state) | set(a_state)):
            if key not in a_state:
                changes.append(Change(kind="state.removed", key=f"{sid}:{key}", before=b_state[key]))
            elif b_state.get(key, _MISSING) != a_state[key]:
                changes.append(Change(kind="state.set", key=f"{sid}:{key}", before=b_state.get(key),
                                      after=a_state[key]))
        if before is not None and after is not None:
            if before.name != after.name:
                changes.append(Change(kind="session.renamed", key=sid, before=before.name, after=after.name))
            if before.summary != after.summary:
                changes.append(Change(kind="summary.changed", key=sid, before=before.summary,
                                      after=after.summary))
    for sid in sorted(set(old.conversation.sessions) | set(new.conversation.sessions)):
        b_runs = {r.run_id: r for r in old.conversation.sessions[sid].runs} if sid in old.conversation.sessions else {}
        a_runs = {r.run_id: r for r in new.conversation.sessions[sid].runs} if sid in new.conversation.sessions else {}
        _diff_keyed(changes, "run", b_runs, a_runs, lambda r: _run_text(r.run), prefix=f"{sid}:")
    b_wf, a_wf = old.workflows.workflows, new.workflows.workflows
    for key in sorted(set(b_wf) | set(a_wf)):
        b_steps = {s.step for s in b_wf[key].steps} if key in b_wf else set()
        for step in a_wf[key].steps if key in a_wf else []:
            if step.step not in b_steps:
                changes.append(Change(kind="workflow.step", key=key.replace("\x1f", ":"),
                                      after=step.name or step.step))
    return changes


_MISSING = object()


def _diff_keyed(changes: list[Change], kind: str, before: dict[str, Any], after: dict[str, Any],
                show: Callable[[Any], Any], prefix: str = "") -> None:
    for key in before:
        if key not in after:
            changes.append(Change(kind=f"{kind}.removed", key=prefix + key, before=show(before[key])))
    for key, value in after.items():
        if key not in before:
            changes.append(Change(kind=f"{kind}.added", key=prefix + key, after=show(value)))
        elif msgspec.msgpack.encode(before[key]) != msgspec.msgpack.encode(value) and show(before[key]) != show(value):
            changes.append(Change(kind=f"{kind}.changed", key=prefix + key, before=show(before[key]),
                                  after=show(value)))


def _run_text(run: dict[str, Any]) -> Any:
    content = run.get("content")
    return content if content is not None else run.get("status", "")


# --- fork ---------------------------------------------------------------------------------


def fork_session(store: EventStore, session_id: str, at: Point, new_session_id: str | None = None,
                 *, actor: Actor | None = None) -> str:
    """Copy a session's events up to `at` into a new session stream and return its id.

    The new stream starts with a `session.forked` event naming the origin; each copy gets a new
    id and points back at its original through `causation_id`. The original is untouched."""
    origin = session_stream(session_id)
    events = list(events_at(store, at, stream=origin))
    if not events:
        raise PointNotFound(f"session {session_id!r} has no events at or before {at!s}")
    new_id_ = new_session_id or new_id()
    target = session_stream(new_id_)
    if store.head(target).version:
        raise InvalidEvent(f"session {new_id_!r} already exists; choose another id for the fork")
    last = events[-1]
    copies = [
        new_event(
            SessionForked(session_id=new_id_, origin_session_id=session_id, origin_stream=origin,
                          origin_version=last.version, origin_event_id=last.id),
            actor=actor or msgspec.structs.replace(last.actor, session_id=new_id_, run_id=None),
            causation_id=last.id,
        )
    ]
    for event in events:
        payload = event.payload
        if getattr(payload, "session_id", None) == session_id:
            payload = msgspec.structs.replace(payload, session_id=new_id_)
        if isinstance(payload, RunRecorded) and payload.run.get("session_id") == session_id:
            payload = msgspec.structs.replace(payload, run={**payload.run, "session_id": new_id_})
        copies.append(
            msgspec.structs.replace(
                event, id=new_id(), stream="", version=0, position=0, partition=0, prev_hash="", hash="",
                payload=payload, causation_id=event.id,
                actor=msgspec.structs.replace(event.actor, session_id=new_id_)
                if event.actor.session_id == session_id else event.actor,
            )
        )
    store.append(target, copies, expected_version=0)
    return new_id_
