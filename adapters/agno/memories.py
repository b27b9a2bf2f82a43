"""EventLogDb's user memories: each upsert is `memory.added` or `memory.updated` (old and new
text) on the user's stream, attributed to the agent or team that wrote it.

Reads use the memories read model's per-user index, so one user's memories are found without
looking at anybody else's. Semantics follow Agno's InMemoryDb.
"""

from __future__ import annotations

import copy
import time
from typing import Any
from uuid import uuid4

from agno.db.in_memory.utils import apply_sorting
from agno.db.schemas.memory import UserMemory

from adapters.agno.core import EventLogCore, actor_of
from adapters.agno.rows import memory_delta, memory_row
from adapters.agno.sessions import _page
from eventlog import UserMemoriesCleared, UserMemoryDeleted
from eventlog.names import user_stream
from projections import MemoriesState, MemoryRow, memory_stats
from projections.index.views import IndexedStates, RowMap
from projections.memories import memory_text

CLEAR_STREAM = "memories/all"
_MEMORY_SORTS = {None: "seq", "updated_at": "upd", "created_at": "cre"}


def _memory_scopes(user_id: str | None, agent_id: str | None, team_id: str | None) -> list[str]:
    """The index's memory scopes a filter names (`u=`, `a=`, `tm=`: see `memory_members`)."""
    return [f"{name}={value}" for name, value in (("u", user_id), ("a", agent_id), ("tm", team_id))
            if isinstance(value, str)]


class MemoryMethods(EventLogCore):
    def upsert_user_memory(self, memory: UserMemory, deserialize: bool | None = True) -> Any:
        if memory.memory_id is None:
            memory.memory_id = str(uuid4())
        new = memory.to_dict() if hasattr(memory, "to_dict") else dict(memory.__dict__)
        new["updated_at"] = int(time.time())
        with self._write_lock:
            with self._reading() as states:
                old = states["memories"].memories.get(memory.memory_id)
            payload = memory_delta(copy.deepcopy(new), old)
            self._emit(user_stream(new.get("user_id")), [payload], actor_of(new, user_id=new.get("user_id")))
        out = copy.deepcopy(new)
        if not deserialize:
            return out
        return UserMemory.from_dict(out)

    def upsert_memories(self, memories: list[UserMemory], deserialize: bool | None = True,
                        preserve_updated_at: bool = False) -> list[Any]:
        results = []
        for memory in memories:
            if memory is not None:
                result = self.upsert_user_memory(memory, deserialize=deserialize)
                if result is not None:
                    results.append(result)
        return results

    def get_user_memory(self, memory_id: str, deserialize: bool | None = True,
                        user_id: str | None = None) -> Any:
        with self._reading() as states:
            row = states["memories"].memories.get(memory_id)
            if row is None or (user_id is not None and row.user_id != user_id):
                return None
            data = memory_row(row)
        return data if not deserialize else UserMemory.from_dict(data)

    def _rows(self, state: MemoriesState, user_id: str | None) -> list[MemoryRow]:
        if user_id is not None:
            if isinstance(state.memories, RowMap):  # the index: the user's rows in one read
                return state.memories.many(list(state.by_user.get(user_id, {})))
            return [state.memories[m] for m in state.by_user.get(user_id, {})]
        # insertion order across users, as Agno's list-backed stores keep it
        return list(state.memories.values())

    def get_user_memories(
        self,
        user_id: str | None = None,
        agent_id: str | None = None,
        team_id: str | None = None,
        topics: list[str] | None = None,
        search_content: str | None = None,
        limit: int | None = None,
        page: int | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
        deserialize: bool | None = True,
    ) -> Any:
        needle = search_content.lower() if search_content is not None else None
        with self._reading() as states:
            indexed = isinstance(states, IndexedStates)
            scopes = _memory_scopes(user_id, agent_id, team_id) if indexed else []
            named = sum(v is not None for v in (user_id, agent_id, team_id))
            indexed = indexed and len(scopes) == named  # (an id that is not a string: the table)
            if indexed and sort_by in _MEMORY_SORTS and named <= 1 and topics is None:
                # all memories, or one user's, agent's or team's, unfiltered otherwise: a page
                # of the index's ordering; with a search (AgentOS's memory search box), the
                # memories' texts tested in the index, in that order. Only the page's rows are read.
                offset = (page - 1) * limit if limit is not None and page is not None else 0
                ordering = f"m|{scopes[0] if scopes else 'all'}|{_MEMORY_SORTS[sort_by]}"
                desc = sort_by is not None and sort_order != "asc"
                if needle:
                    found, total = states.memories_containing(ordering, desc=desc, needle=needle, offset=offset,
                                                              limit=limit)
                else:
                    found = states.memory_page(ordering, desc=desc, offset=offset, limit=limit)
                    total = states.count(ordering) if not deserialize else 0
                page_rows = [memory_row(r) for r in found]
                if not deserialize:
                    return page_rows, total
                return [UserMemory.from_dict(r) for r in page_rows]
            if indexed and topics is not None and all(isinstance(t, str) for t in topics):
                # a topics filter (AgentOS's memory page): only the memories of those topics
                # (or the user's, when fewer) are read; the filters and the sort run on them
                source = states.memories_of_topics(topics, user_id)
            elif indexed and (agent_id is not None or team_id is not None):
                # several of user/agent/team (a search too), or a sort the orderings lack: the
                # memories of the smallest of those scopes, filtered and sorted here
                source = states.memories_of_scope(min(scopes, key=lambda o: states.count(f"m|{o}|seq")))
            else:
                source = self._rows(states["memories"], user_id)
            rows = [
                memory_row(r)
                for r in source
                if (user_id is None or (r.user_id or "") == user_id)
                and (agent_id is None or r.agent_id == agent_id)
                and (team_id is None or r.team_id == team_id)
                and (topics is None or any(t in r.topics for t in topics))
                and (needle is None or needle in memory_text(r))
            ]
        total = len(rows)
        rows = _page(apply_sorting(rows, sort_by, sort_order), limit, page)
        if not deserialize:
            return rows, total
        return [UserMemory.from_dict(r) for r in rows]

    def get_all_memory_topics(self, user_id: str | None = None) -> list[str]:
        with self._reading() as states:
            if user_id is None and isinstance(states, IndexedStates):
                return states.topics()  # the index counts the memories of each topic
            topics: set[str] = set()
            for row in self._rows(states["memories"], user_id):
                topics.update(row.topics)
        return list(topics)

    def get_user_memory_stats(self, limit: int | None = None, page: int | None = None,
                              user_id: str | None = None) -> tuple[list[dict[str, Any]], int]:
        with self._reading() as states:
            if isinstance(states, IndexedStates):
                offset = (page - 1) * limit if limit is not None and page is not None else 0
                return states.memory_stats(user_id, offset, limit)
            stats = memory_stats(states["memories"], user_id)
        return _page(stats, limit, page), len(stats)

    def delete_user_memory(self, memory_id: str, user_id: str | None = None) -> None:
        self.delete_user_memories([memory_id], user_id=user_id)

    def delete_user_memories(self, memory_ids: list[str], user_id: str | None = None) -> None:
        with self._write_lock:
            with self._reading() as states:
                rows = [states["memories"].memories.get(m) for m in memory_ids]  # (few ids)
            for row in rows:
                if row is None or (user_id is not None and row.user_id != user_id):
                    continue
                self._emit(user_stream(row.user_id), [UserMemoryDeleted(memory_id=row.memory_id, user_id=row.user_id)],
                           actor_of({"agent_id": row.agent_id, "team_id": row.team_id}, user_id=row.user_id))

    def clear_memories(self) -> None:
        with self._write_lock:
            self._emit(CLEAR_STREAM, [UserMemoriesCleared(user_id=None)], actor_of({}))
