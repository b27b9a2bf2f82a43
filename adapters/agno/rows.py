"""Agno rows <-> events: what an upsert means as a delta, and how a read model becomes a row.

Pure functions, no I/O: the database class decides when to call them. A session row is split
into the parts the sessions read model knows (state, name, summary, owner ids) and `fields`
(every other column, as Agno wrote it), so `session_row` rebuilds exactly what was upserted.
"""

from __future__ import annotations

import copy
from typing import Any

from eventlog import (
    Payload,
    SessionFieldsChanged,
    SessionRenamed,
    SessionStarted,
    SessionStateChanged,
    SessionSummaryChanged,
    UserMemoryAdded,
    UserMemoryUpdated,
)
from projections import MemoryRow, SessionRow
from projections.fold import epoch_of
from projections.index.indexer import HEAD_COLUMNS

OWNER_KEYS = ("agent_id", "team_id", "workflow_id", "user_id")
KEYS = "__columns__"
HAS_TOPICS = "__has_topics__"
_DERIVED = frozenset({"session_id", "session_type", "runs", "summary", "created_at", "updated_at", *OWNER_KEYS})
_STATE, _NAME = "session_state", "session_name"


def split_session(row: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None, dict[str, Any]]:
    """(state or None when absent, name, other columns) of an Agno session dict."""
    data = row.get("session_data")
    fields = {k: v for k, v in row.items() if k not in _DERIVED}
    fields[KEYS] = [k for k in row if k != "runs"]  # which columns this session type has
    state = None
    name = None
    if isinstance(data, dict):
        rest = {k: v for k, v in data.items() if k not in (_STATE, _NAME)}
        state = data.get(_STATE) if isinstance(data.get(_STATE), dict) else None
        name = data.get(_NAME)
        fields["session_data"] = rest
    return state, name, fields


def session_deltas(new: dict[str, Any], old: SessionRow | None) -> list[Payload]:
    """The events an upsert of `new` implies, given the projected row `old` (None: new)."""
    sid = new["session_id"]
    state, name, fields = split_session(new)
    summary = new.get("summary")
    out: list[Payload] = []
    if old is None:
        out.append(SessionStarted(
            session_id=sid, session_type=new.get("session_type") or "agent", name=name, fields=fields,
            created_at=epoch_of(new.get("created_at"), 0) or None,
            **{k: new.get(k) for k in OWNER_KEYS},
        ))
        if state is not None:
            out.append(SessionStateChanged(session_id=sid, set=state))
        if summary is not None:
            out.append(SessionSummaryChanged(session_id=sid, summary=summary))
        return out
    changed = {k: new.get(k) for k in OWNER_KEYS if new.get(k) != getattr(old, k)}
    if (new.get("session_type") or old.session_type) != old.session_type:
        changed["session_type"] = new.get("session_type")
    changed.update({k: v for k, v in fields.items() if old.fields.get(k, _ABSENT) != v})
    changed.update({k: None for k in old.fields if k not in fields and old.fields[k] is not None})
    if changed:
        out.append(SessionFieldsChanged(session_id=sid, fields=changed))
    if name is not None and name != old.name:
        out.append(SessionRenamed(session_id=sid, name=name))
    if state is not None:
        set_ = {k: v for k, v in state.items() if old.state.get(k, _ABSENT) != v}
        removed = [k for k in old.state if k not in state]
        if set_ or removed or not old.has_state:
            out.append(SessionStateChanged(session_id=sid, set=set_, removed=removed))
    if summary != old.summary:
        out.append(SessionSummaryChanged(session_id=sid, summary=summary))
    return out


_ABSENT = object()


def session_row(row: SessionRow, runs: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The Agno session dict of a projected row (a fresh copy the caller may mutate)."""
    fields = copy.deepcopy(row.fields)
    out: dict[str, Any] = {"session_id": row.session_id, "session_type": row.session_type}
    out.update({k: getattr(row, k) for k in OWNER_KEYS})
    data = fields.pop("session_data", None)
    keys = fields.pop(KEYS, None)
    if data is not None or row.has_state or row.name is not None:
        data = dict(data or {})
        if row.has_state:
            data[_STATE] = copy.deepcopy(row.state)
        if row.name is not None:
            data[_NAME] = row.name
    out["session_data"] = data
    out.update(fields)
    out["summary"] = copy.deepcopy(row.summary)
    out["created_at"] = row.created_at
    out["updated_at"] = row.updated_at
    if keys:  # exactly the columns Agno gave us (a WorkflowSession has no agent_id, ...)
        out = {k: out.get(k) for k in (*keys, "session_type") if k != KEYS}
    out["runs"] = runs
    return out


def session_sort_dict(row: SessionRow, column: str) -> dict[str, Any]:
    """What sorting `session_row(row, None)` dicts by `column` looks at, without building
    them: `{column: value}` where that dict has the column (the value shared, not copied;
    `created_at` too for `updated_at`, which falls back to it), else `{}`. Building and
    deep-copying every matching session's dict was most of a sort over thousands."""
    keys = row.fields.get(KEYS)
    if column == "runs":
        return {column: None}
    if keys and column not in keys and column != "session_type":
        return {}
    # (the precedence of `session_row`: later keys there overwrite earlier ones)
    if column in ("created_at", "updated_at"):
        out = {column: getattr(row, column)}
        if column == "updated_at":
            out["created_at"] = row.created_at
        return out
    if column == "summary":
        return {column: row.summary}
    if column in row.fields and column not in ("session_data", KEYS):
        return {column: row.fields[column]}
    if column == "session_data":
        data = row.fields.get("session_data")
        if data is not None or row.has_state or row.name is not None:
            data = dict(data or {})
            if row.has_state:
                data[_STATE] = row.state
            if row.name is not None:
                data[_NAME] = row.name
        return {column: data}
    if column in ("session_id", "session_type", *OWNER_KEYS):
        return {column: getattr(row, column)}
    return {column: None} if keys else {}


HEAD_SORTS = frozenset(HEAD_COLUMNS)
"""The columns a `SessionHead` can sort by (`head_sort_value`)."""


_MEMORY_CORE = ("memory_id", "memory", "topics", "input", "user_id")


def memory_delta(new: dict[str, Any], old: MemoryRow | None) -> Payload:
    """`memory.added` for a new id, else `memory.updated` carrying the old text too."""
    fields = {k: v for k, v in new.items() if k not in _MEMORY_CORE}
    if "topics" in new:
        fields[HAS_TOPICS] = True  # Agno distinguishes no topics (absent) from an empty list
    common = {
        "memory_id": new["memory_id"],
        "user_id": new.get("user_id"),
        "memory": new.get("memory"),
        "topics": list(new.get("topics") or []),
        "input": new.get("input"),
        "fields": fields,
    }
    if old is None:
        return UserMemoryAdded(**common)
    return UserMemoryUpdated(old_memory=old.memory, **common)


def memory_row(row: MemoryRow) -> dict[str, Any]:
    """The Agno memory dict of a projected memory (None values dropped, as Agno does)."""
    fields = copy.deepcopy(row.fields)
    has_topics = fields.pop(HAS_TOPICS, False)
    out: dict[str, Any] = {"memory_id": row.memory_id, "memory": row.memory,
                           "topics": list(row.topics) if has_topics or row.topics else None}
    out.update(fields)
    out["input"] = row.input
    out["user_id"] = row.user_id
    return {k: v for k, v in out.items() if v is not None or (k == "topics" and has_topics)}
