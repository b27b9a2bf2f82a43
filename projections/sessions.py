"""The sessions index: every session with its owner, name, state, summary and other columns.

Agno lists sessions by user, agent, team, workflow and type, sorted and paged; this read model
answers that without touching runs (those live in the conversation read model).
"""

from __future__ import annotations

from collections.abc import Callable
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
from projections.fold import Projection, epoch


class SessionRow(msgspec.Struct, kw_only=True):
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

    def initial(self) -> SessionsState:
        return SessionsState({})

    def apply(self, state: SessionsState, event: Event) -> SessionsState:
        p = event.payload
        if not isinstance(p, _SESSION_EVENTS):
            return state
        sid = p.session_id
        if isinstance(p, SessionDeleted):
            state.sessions.pop(sid, None)
            return state
        row = state.sessions.get(sid)
        now = epoch(event.at)
        if isinstance(p, SessionStarted):
            row = SessionRow(
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
            state.sessions[sid] = row
        elif row is None:
            row = state.sessions[sid] = SessionRow(
                session_id=sid, created_at=now, updated_at=now, stream=event.stream,
                user_id=event.actor.user_id, agent_id=event.actor.agent_id, team_id=event.actor.team_id,
                workflow_id=event.actor.workflow_id,
            )
        if isinstance(p, SessionRenamed):
            row.name = p.name
        elif isinstance(p, SessionStateChanged):
            for key in p.removed:
                row.state.pop(key, None)
            row.state.update(p.set)
            row.has_state = True
        elif isinstance(p, SessionSummaryChanged):
            row.summary = p.summary
        elif isinstance(p, SessionFieldsChanged):
            for key, value in p.fields.items():
                if key in _ROW_ATTRS:
                    setattr(row, key, value)
                else:
                    row.fields[key] = value
        elif isinstance(p, SessionForked):
            row.forked_from = p.origin_session_id
        row.updated_at = max(row.updated_at, now)
        row.version = event.version
        return state


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
