"""Time travel in the UI: a point from URL text, the session's state just after it, diffs
between two points, and forks.

A state folds the session's own stream, its user's memories and its workflows up to the
point with the read models' own `apply` (`projections`), reading each stream once per page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from adapters.agno.db import EventLogDb
from adapters.ui.queries import TIME_LIKE, BadRequest, NotFound, bounded, point_of, session_events
from eventlog import Cursor, Event
from eventlog.names import session_stream, user_stream, workflow_stream
from projections import (
    ConversationProjection,
    SessionsProjection,
    UserMemoriesProjection,
    WorkflowsProjection,
    parse_point,
)
from projections.timetravel import Change, Models, Point, PointNotFound, diff_models, point_filter


def resolve_point(db: EventLogDb, session_id: str, text: str,
                  events: list[Event] | None = None) -> tuple[Point, list[Event]]:
    """A point from URL text (a position, an ISO time or an event id of this session) and the
    session's events up to it. BadRequest for a malformed or out-of-range point, NotFound for
    an event id that is not this session's. `events`: the session's, when already read."""
    text = (text or "").strip()
    if not text:
        raise BadRequest("no point given: a position (N), an ISO time or an event id")
    if events is None:
        events = session_events(db, session_id)
    value = parse_point(text)
    if isinstance(value, str):
        if TIME_LIKE.match(value):
            raise BadRequest(f"bad time {text!r}: use ISO 8601, e.g. 2026-11-24T20:00:00Z")
        if not re.fullmatch(r"[0-9a-fA-F-]{8,64}", value):
            raise BadRequest(f"bad point {text!r}: a position (N), an ISO time or an event id")
        for i, event in enumerate(events):
            if event.id == value:
                if db.store.partitions == 1 and event.partition == 0:
                    return Cursor({0: event.position}), events[: i + 1]
                return value, events[: i + 1]
        raise NotFound(f"no event {value!r} in session {session_id!r}" + (f" up to {db.point!s}" if db.point else ""))
    if isinstance(value, datetime):
        if db.point is not None and isinstance(db.point, datetime) and value > db.point:
            raise BadRequest(f"{text} is after this view's point ({db.point.isoformat()})")
        return value, [e for e in events if e.at <= value]
    cursor = Cursor.of(value)
    end = db.store.last_position()
    for partition, offset in cursor.offsets.items():
        if offset > end.get(partition):
            raise BadRequest(f"position {text} is past the end of the log (last: {end!s})")
    if db.point is not None and isinstance(db.point, (Cursor, int)):
        view = Cursor.of(db.point)
        if any(offset > view.get(p) for p, offset in cursor.offsets.items()):
            raise BadRequest(f"position {text} is after this view's point ({view!s})")
    return cursor, [e for e in events if cursor.covers(e)]


def _fold(db: EventLogDb, events: list[Event], point: Point | None) -> Models:
    """Sessions, conversation, memories and workflows folded over `events` up to `point`
    (None: none of them), with the same `apply` as the live read models. The events come
    from a few streams, each in order; streams are independent, so their order does not
    matter."""
    sessions, conversation = SessionsProjection(), ConversationProjection()
    memories, workflows = UserMemoriesProjection(), WorkflowsProjection()
    models = Models(sessions.initial(), conversation.initial(), memories.initial(), workflows.initial())
    if point is None:
        return models
    keep = point_filter(db.store, point)
    for event in events:
        if keep(event):
            sessions.apply(models.sessions, event)
            conversation.apply(models.conversation, event)
            memories.apply(models.memories, event)
            workflows.apply(models.workflows, event)
    return models


def related_events(db: EventLogDb, session_id: str, own: list[Event]) -> list[Event]:
    """The session's events (`own`, already read) and those of its user's memories and its
    workflows, as far as the view reaches."""
    events = list(own)
    for stream in session_streams(db, session_id, _user_of(own))[1:]:
        if db.store.head(stream).version:
            events.extend(bounded(db, db.store.read(stream)))
    return events


def session_streams(db: EventLogDb, session_id: str, user_id: str | None) -> list[str]:
    """The streams whose state belongs with a session: its own, its user's memories, and
    its workflows (`workflow/<name>%2F<session>`)."""
    streams = [session_stream(session_id)]
    if user_id:
        streams.append(user_stream(user_id))
    suffix = workflow_stream("w", session_id)[len("workflow/w"):]
    streams += [s for s in db.store.streams("workflow/") if s.endswith(suffix)]
    return streams


@dataclass
class PointState:
    session_id: str
    point: str  # as asked
    event: Event | None  # the session's last event at the point
    previous: str | None  # the point of the session event before it
    next: str | None  # and of the one after it
    models: Models
    changes: list[Change]  # against `previous`
    events_before: int  # the session's events at the point
    runs_now: int


def _user_of(events: list[Event]) -> str | None:
    for event in events:
        user = event.actor.user_id or getattr(event.payload, "user_id", None)
        if user:
            return str(user)
    return None


def state_at(db: EventLogDb, session_id: str, text: str) -> PointState:
    """The session, its conversation, its user's memories and its workflows just after the
    point, and what changed since the session's event before it."""
    everything = session_events(db, session_id)
    point, upto = resolve_point(db, session_id, text, everything)
    events = related_events(db, session_id, everything)
    models = _fold(db, events, point)
    previous = point_of(db.store, upto[-2]) if len(upto) >= 2 else None
    before = _fold(db, events, previous)
    after = point_of(db.store, everything[len(upto)]) if len(upto) < len(everything) else None
    now = ConversationProjection().fold(everything).sessions.get(session_id)
    runs_now = len(now.entries) if now is not None else 0
    return PointState(session_id=session_id, point=text, event=upto[-1] if upto else None, previous=previous,
                      next=after, models=models, changes=diff_models(before, models), events_before=len(upto),
                      runs_now=runs_now)


def diff_points(db: EventLogDb, session_id: str, a: str, b: str) -> list[Change]:
    """What changed in the session (and its user's memories and workflows) from `a` to `b`."""
    everything = session_events(db, session_id)
    point_a, _ = resolve_point(db, session_id, a, everything)
    point_b, _ = resolve_point(db, session_id, b, everything)
    events = related_events(db, session_id, everything)
    return diff_models(_fold(db, events, point_a), _fold(db, events, point_b))


def fork(db: EventLogDb, session_id: str, text: str) -> str:
    """A new session holding this one's events up to the point (the original is untouched)."""
    point, upto = resolve_point(db, session_id, text)
    if not upto:
        raise BadRequest(f"session {session_id!r} has no events at or before {text}")
    try:
        return db.fork_session(session_id, point)
    except PointNotFound as exc:
        raise NotFound(str(exc)) from None
