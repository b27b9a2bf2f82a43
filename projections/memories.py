"""User context: what agents remembered about each user, who wrote it, and when it changed.

Indexed by memory id and by user, so a per-user query touches only that user's memories
(Agno's `get_user_memories` on 10k memories of 100 users reads 100, not 10,000).
"""

from __future__ import annotations

from typing import Any

import msgspec

from eventlog import (
    Event,
    UserForgotten,
    UserMemoriesCleared,
    UserMemoryAdded,
    UserMemoryDeleted,
    UserMemoryUpdated,
)
from eventlog.crypto import ERASED
from projections.fold import Projection, epoch, epoch_of
from projections.sessions import page_rows


class MemoryRow(msgspec.Struct, kw_only=True, gc=False):
    """One memory. `gc=False`: see `projections.sessions.SessionRow`."""

    memory_id: str
    user_id: str | None = None
    memory: Any = None
    topics: list[str] = []
    input: str | None = None
    fields: dict[str, Any] = {}
    agent_id: str | None = None
    team_id: str | None = None
    run_id: str | None = None
    created_at: int = 0
    updated_at: int = 0
    created_by: str | None = None  # agent (or team) that first wrote it
    updated_by: str | None = None
    event_id: str = ""
    changes: int = 0


class MemoriesState(msgspec.Struct):
    memories: dict[str, MemoryRow] = {}
    by_user: dict[str, dict[str, None]] = {}  # user ("" for none) -> memory ids, insertion-ordered


class UserMemoriesProjection(Projection[MemoriesState]):
    name = "memories"
    schema = 2  # 2: a memory that changes users keeps its place in the new user's list
    state_type = MemoriesState
    lazy_runs = True  # reads no run bodies
    handles = (UserMemoryAdded, UserMemoryUpdated, UserMemoryDeleted, UserMemoriesCleared, UserForgotten)

    def initial(self) -> MemoriesState:
        return MemoriesState({}, {})

    def apply(self, state: MemoriesState, event: Event) -> MemoriesState:
        p = event.payload
        if isinstance(p, (UserMemoryAdded, UserMemoryUpdated)):
            now = epoch(event.at)
            a = event.actor
            writer = a.agent_id or a.team_id
            memory_id, user_id, fields = p.memory_id, p.user_id, p.fields
            old = state.memories.get(memory_id)
            moved = False
            if old is not None and old.user_id != user_id:
                _unlink(state, old)
                moved = True
            if fields:  # Agno's own columns, when the writer passed them
                agent_id = fields.get("agent_id") or a.agent_id
                team_id = fields.get("team_id") or a.team_id
                created_at = epoch_of(fields.get("created_at"), now)
                updated_at = epoch_of(fields.get("updated_at"), now)
            else:
                agent_id, team_id, created_at, updated_at = a.agent_id, a.team_id, now, now
            state.memories[memory_id] = MemoryRow(
                memory_id=memory_id,
                user_id=user_id,
                memory=p.memory,
                topics=list(p.topics),
                input=p.input,
                fields=dict(fields),
                agent_id=agent_id,
                team_id=team_id,
                run_id=a.run_id,
                created_at=old.created_at if old is not None else created_at,
                updated_at=updated_at,
                created_by=old.created_by if old is not None else writer,
                updated_by=writer,
                event_id=event.id,
                changes=(old.changes + 1) if old is not None else 1,
            )
            ids = state.by_user.setdefault(user_id or "", {})
            ids[memory_id] = None
            if moved and len(ids) > 1:
                # A memory that changes users keeps its place in the table (Agno's InMemoryDb
                # replaces it where it was first inserted; the shared index keeps its insertion
                # number), so it is listed among its new user's there, not last: that list is
                # rebuilt in the table's order (a rare write).
                state.by_user[user_id or ""] = {m: None for m in state.memories if m in ids}
        elif isinstance(p, UserMemoryDeleted):
            gone = state.memories.pop(p.memory_id, None)
            if gone is not None:
                _unlink(state, gone)
        elif isinstance(p, UserForgotten):
            # The user's key is gone: what was folded from their encrypted fields is erased
            # too, so a live read model agrees with a rebuild.
            for memory_id in state.by_user.get(p.user_id, {}):
                row = state.memories[memory_id]
                row.memory, row.input = ERASED, None
        elif isinstance(p, UserMemoriesCleared):
            if p.user_id is None:
                state.memories.clear()
                state.by_user.clear()
            else:
                for memory_id in state.by_user.pop(p.user_id, {}):
                    state.memories.pop(memory_id, None)
        return state


def _unlink(state: MemoriesState, row: MemoryRow) -> None:
    ids = state.by_user.get(row.user_id or "")
    if ids is not None:
        ids.pop(row.memory_id, None)
        if not ids:
            del state.by_user[row.user_id or ""]


def memory_text(row: MemoryRow) -> str:
    """What a `search_content` filter matches against: the memory as text, lower-cased (a
    memory of None holds no text). The in-process filters and the shared index's text rows
    (`projections.index`) both test this."""
    return str(row.memory if row.memory is not None else "").lower()


def query_memories(
    state: MemoriesState,
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    team_id: str | None = None,
    topics: list[str] | None = None,
    search_content: str | None = None,
    sort_by: str | None = None,
    sort_order: str | None = None,
    limit: int | None = None,
    page: int | None = None,
) -> tuple[list[MemoryRow], int]:
    """Filter (user first, through the index), sort (default updated_at desc), page."""
    if user_id is not None:
        candidates = [state.memories[m] for m in state.by_user.get(user_id, {})]
    else:
        candidates = list(state.memories.values())
    wanted = set(topics) if topics else None
    needle = search_content.lower() if search_content else None
    rows = [
        r
        for r in candidates
        if (agent_id is None or r.agent_id == agent_id)
        and (team_id is None or r.team_id == team_id)
        and (wanted is None or wanted.intersection(r.topics))
        and (needle is None or needle in memory_text(r))
    ]
    total = len(rows)
    key = sort_by or "updated_at"
    reverse = (sort_order or "desc").lower() != "asc"
    rows.sort(key=lambda r: _value(r, key), reverse=reverse)
    return page_rows(rows, limit, page), total


def _value(row: MemoryRow, key: str) -> tuple[int, Any]:
    value = getattr(row, key, None)
    if value is None:
        value = row.fields.get(key)
    return (0, "") if value is None else (1, value if not isinstance(value, (list, dict)) else str(value))


def memory_topics(state: MemoriesState, user_id: str | None = None) -> list[str]:
    rows = (
        (state.memories[m] for m in state.by_user.get(user_id, {}))
        if user_id is not None
        else state.memories.values()
    )
    seen: dict[str, None] = {}
    for row in rows:
        for topic in row.topics:
            seen[topic] = None
    return list(seen)


def memory_stats(state: MemoriesState, user_id: str | None = None) -> list[dict[str, Any]]:
    """Per user: how many memories and when the last one changed, newest first."""
    stats: list[dict[str, Any]] = []
    for user, ids in state.by_user.items():
        if not user or (user_id is not None and user != user_id) or not ids:
            continue
        last = max(state.memories[m].updated_at for m in ids)
        stats.append({"user_id": user, "total_memories": len(ids), "last_memory_updated_at": last})
    stats.sort(key=lambda s: int(s["last_memory_updated_at"]), reverse=True)
    return stats
