"""The sessions index: every session with its owner, name, state, summary and other columns.

Agno lists sessions by user, agent, team, workflow and type, sorted and paged; this read model
answers that without touching runs (those live in the conversation read model).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import msgspec

from eventlog import (
    Event,
    RunDeleted,
    RunRecorded,
    SessionDeleted,
    SessionFieldsChanged,
    SessionForked,
    SessionRenamed,
    SessionStarted,
    SessionStateChanged,
    SessionSummaryChanged,
)
from eventlog.lazy_runs import LazyRunRecorded
from projections.fold import Projection, epoch


class SessionRow(msgspec.Struct, kw_only=True, gc=False):
    """One session's row. `gc=False` (as for every row a read model keeps per key): a row
    holds what events carried — strings, numbers and JSON trees — and nothing that points
    back at it, so it can be in no reference cycle, and the cyclic GC need not walk one
    object per session on every full collection (with runs, sessions and memories tracked,
    the collections of a rebuild cost 7 % of it; the process's other objects make each one
    dearer still)."""

    session_id: str
    session_type: str = "agent"
    agent_id: str | None = None
    team_id: str | None = None
    workflow_id: str | None = None
    user_id: str | None = None
    name: str | None = None
    state: dict[str, Any] = {}
    has_state: bool = False  # whether a state was ever recorded (even an empty one)
    summary: Any = None
    fields: dict[str, Any] = {}
    created_at: int = 0
    updated_at: int = 0
    forked_from: str | None = None
    stream: str = ""
    version: int = 0  # last version of the session stream folded in


class SessionsState(msgspec.Struct):
    sessions: dict[str, SessionRow] = {}


_ROW_ATTRS = frozenset({"session_type", "agent_id", "team_id", "workflow_id", "user_id"})

_SESSION_EVENTS = (
    SessionStarted,
    SessionRenamed,
    SessionDeleted,
    SessionStateChanged,
    SessionSummaryChanged,
    SessionFieldsChanged,
    SessionForked,
    RunRecorded,
    RunDeleted,
)


class SessionsProjection(Projection[SessionsState]):
    name = "sessions"
    schema = 1
    state_type = SessionsState
    handles = _SESSION_EVENTS
    lazy_runs = True  # reads no run bodies

    def initial(self) -> SessionsState:
        return SessionsState({})

    def apply(self, state: SessionsState, event: Event) -> SessionsState:
        # One dict lookup by payload type instead of a chain of isinstance checks: a rebuild
        # calls this for most events of the log (every run touches its session's row).
        p = event.payload
        handler = _HANDLERS.get(type(p))
        if handler is None:
            handler = _handler_for(type(p))
            if handler is None:
                return state
        handler(state.sessions, event, p)
        return state

    def fold(self, events: Iterable[Event], state: SessionsState | None = None) -> SessionsState:
        """`apply` over `events` as one loop, with the hot case inline: a run recorded in a
        session that has a row only moves the row's `updated_at` (to the latest time) and
        `version` (to the last event's). A stretch of such runs in one session — a turn's
        writes, a session's history — is settled once at its end: per run, a string
        comparison and a time comparison instead of a lookup, the seconds arithmetic and
        two writes. (The latest time gives the latest whole second: `epoch` never goes
        backwards for aware times. Naive ones — `epoch` reads them in local time, which can
        — are never taken into a stretch.)"""
        if not self.applies_as(SessionsProjection):  # a subclass's own `apply`: fold with it
            return super().fold(events, state)
        current = self.initial() if state is None else state
        sessions = current.sessions
        handlers = _HANDLERS
        row: SessionRow | None = None  # the row of the stretch of runs being folded, if any
        stretch_sid = None
        latest: Any = None  # the stretch's latest time so far
        last: Any = None  # its last event
        lazy_run = LazyRunRecorded
        for event in events:
            p = event.payload
            if type(p) is lazy_run or isinstance(p, RunRecorded):  # (the first: a rebuild's runs)
                sid = p.session_id
                if sid == stretch_sid:
                    at = event.at
                    try:
                        if at > latest:
                            latest = at
                    except TypeError:  # a naive time among aware ones: settled on its own
                        _settle(row, latest, last)  # type: ignore[arg-type]
                        row = stretch_sid = None
                        _run_changed(sessions, event, p)
                        continue
                    last = event
                    continue
                if row is not None:
                    _settle(row, latest, last)
                    row = stretch_sid = None
                at = event.at
                if at.tzinfo is not None:
                    row = sessions.get(sid)
                    if row is not None:
                        stretch_sid, latest, last = sid, at, event
                        continue
            elif row is not None:
                _settle(row, latest, last)
                row = stretch_sid = None
            handler = handlers.get(type(p))
            if handler is None:
                handler = _handler_for(type(p))
                if handler is None:
                    continue
            handler(sessions, event, p)
        if row is not None:
            _settle(row, latest, last)
        return current


def _settle(row: SessionRow, latest: datetime, last: Event) -> None:
    """A stretch of runs of one session: its row moves to their latest time and to the
    version of the last."""
    now = epoch(latest)
    if now > row.updated_at:
        row.updated_at = now
    row.version = last.version


_Handler = Callable[[dict[str, SessionRow], Event, Any], None]


def _row(sessions: dict[str, SessionRow], event: Event, sid: str, now: int) -> SessionRow:
    """The session's row; a row made from the event's actor when the session was never started."""
    row = sessions.get(sid)
    if row is None:
        a = event.actor
        row = sessions[sid] = SessionRow(
            session_id=sid, created_at=now, updated_at=now, stream=event.stream,
            user_id=a.user_id, agent_id=a.agent_id, team_id=a.team_id, workflow_id=a.workflow_id,
        )
    return row


def _touched(row: SessionRow, event: Event, now: int) -> None:
    if now > row.updated_at:
        row.updated_at = now
    row.version = event.version


def _run_changed(sessions: dict[str, SessionRow], event: Event, p: RunRecorded | RunDeleted) -> None:
    """The hot path of a rebuild: a run only moves its session's `updated_at` and `version`."""
    now = epoch(event.at)
    row = sessions.get(p.session_id)
    if row is None:
        row = _row(sessions, event, p.session_id, now)
    elif now > row.updated_at:
        row.updated_at = now
    row.version = event.version


def _started(sessions: dict[str, SessionRow], event: Event, p: SessionStarted) -> None:
    sid = p.session_id
    row = sessions.get(sid)
    now = epoch(event.at)
    sessions[sid] = row = SessionRow(
        session_id=sid,
        session_type=p.session_type,
        agent_id=p.agent_id,
        team_id=p.team_id,
        workflow_id=p.workflow_id,
        user_id=p.user_id,
        name=p.name,
        fields=dict(p.fields),
        created_at=p.created_at or now,
        updated_at=now,
        stream=event.stream,
        forked_from=row.forked_from if row is not None else None,
        state=dict(row.state) if row is not None else {},
        has_state=row.has_state if row is not None else False,
    )
    row.version = event.version


def _deleted(sessions: dict[str, SessionRow], event: Event, p: SessionDeleted) -> None:
    sessions.pop(p.session_id, None)


def _row_change(change: Callable[[SessionRow, Any], None]) -> _Handler:
    """A handler that finds (or makes) the session's row, applies `change` and touches it."""

    def handler(sessions: dict[str, SessionRow], event: Event, p: Any) -> None:
        now = epoch(event.at)
        row = _row(sessions, event, p.session_id, now)
        change(row, p)
        _touched(row, event, now)

    return handler


def _rename(row: SessionRow, p: SessionRenamed) -> None:
    row.name = p.name


def _change_state(row: SessionRow, p: SessionStateChanged) -> None:
    for key in p.removed:
        row.state.pop(key, None)
    row.state.update(p.set)
    row.has_state = True


def _change_summary(row: SessionRow, p: SessionSummaryChanged) -> None:
    row.summary = p.summary


def _change_fields(row: SessionRow, p: SessionFieldsChanged) -> None:
    for key, value in p.fields.items():
        if key in _ROW_ATTRS:
            setattr(row, key, value)
        else:
            row.fields[key] = value


def _fork(row: SessionRow, p: SessionForked) -> None:
    row.forked_from = p.origin_session_id


_HANDLERS: dict[type, _Handler] = {
    SessionStarted: _started,
    SessionRenamed: _row_change(_rename),
    SessionDeleted: _deleted,
    SessionStateChanged: _row_change(_change_state),
    SessionSummaryChanged: _row_change(_change_summary),
    SessionFieldsChanged: _row_change(_change_fields),
    SessionForked: _row_change(_fork),
    RunRecorded: _run_changed,
    RunDeleted: _run_changed,
}
_IGNORED: set[type] = set()


def _handler_for(kind: type) -> _Handler | None:
    """The handler of a payload type that is not one of ours exactly: a subclass of one of
    them (resolved once, then cached), or None (also cached) for every other type."""
    if kind in _IGNORED:
        return None
    for base in kind.__mro__:
        handler = _HANDLERS.get(base)
        if handler is not None:
            _HANDLERS[kind] = handler
            return handler
    _IGNORED.add(kind)
    return None


SortKey = Callable[[SessionRow], Any]


def query_sessions(
    state: SessionsState,
    *,
    session_type: str | None = None,
    user_id: str | None = None,
    agent_id: str | None = None,
    team_id: str | None = None,
    workflow_id: str | None = None,
    name_contains: str | None = None,
    start_timestamp: int | None = None,
    end_timestamp: int | None = None,
    sort_by: str | None = None,
    sort_order: str | None = None,
    limit: int | None = None,
    page: int | None = None,
) -> tuple[list[SessionRow], int]:
    """Filter, sort (default: created_at, descending) and page; returns (rows, total)."""
    rows = [
        r
        for r in state.sessions.values()
        if (session_type is None or r.session_type == session_type)
        and (user_id is None or r.user_id == user_id)
        and (agent_id is None or r.agent_id == agent_id)
        and (team_id is None or r.team_id == team_id)
        and (workflow_id is None or r.workflow_id == workflow_id)
        and (name_contains is None or (r.name or "").lower().find(name_contains.lower()) >= 0)
        and (start_timestamp is None or r.created_at >= start_timestamp)
        and (end_timestamp is None or r.created_at <= end_timestamp)
    ]
    total = len(rows)
    key = sort_by or "created_at"
    reverse = (sort_order or "desc").lower() != "asc"
    rows.sort(key=lambda r: _sort_value(r, key), reverse=reverse)
    return page_rows(rows, limit, page), total


def _sort_value(row: SessionRow, key: str) -> tuple[int, Any]:
    value = getattr(row, key, None)
    if value is None:
        value = row.fields.get(key)
    return (0, "") if value is None else (1, value)


def page_rows(rows: list[Any], limit: int | None, page: int | None) -> list[Any]:
    """Agno's paging: `page` is 1-based and only applies with a `limit`."""
    if limit is None or limit <= 0:
        return rows
    start = ((page or 1) - 1) * limit if page and page > 0 else 0
    return rows[start : start + limit]
