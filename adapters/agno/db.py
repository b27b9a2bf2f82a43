"""`EventLogDb`: Agno's database interface on top of the event log.

    agent = Agent(model=..., db=EventLogDb())              # file store by default
    team = Team(members=[...], db=EventLogDb("redis://localhost:6379/0"))

Every write becomes typed events carrying who wrote it (agent, team, workflow, user, session,
run); every read is served from read models folded from the log. `as_of(point)` gives a
read-only view of the past that an Agent or AgentOS can be pointed at, and `fork_session`
continues a conversation from an earlier turn.
"""

from __future__ import annotations

from typing import Any

from agno.db.base import BaseDb
from agno.db.in_memory import InMemoryDb

from adapters.agno.control_plane import ControlPlaneMethods
from adapters.agno.extras import ExtraMethods
from adapters.agno.learnings import LearningMethods
from adapters.agno.lru import LruDict
from adapters.agno.memories import MemoryMethods
from adapters.agno.records import RecordMethods, _RowsJsonDb
from adapters.agno.sessions import SessionMethods
from adapters.agno.traces import TraceMethods
from eventlog import EventStore, redact_url
from projections.timetravel import Point


class EventLogDb(ExtraMethods, LearningMethods, SessionMethods, MemoryMethods, TraceMethods, RecordMethods,
                 ControlPlaneMethods, BaseDb):
    """An Agno `BaseDb` whose storage is the event log (see the module docstring)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        store: EventStore | None = None,
        id: str | None = None,
        snapshots: bool = True,
        at: Point | str | None = None,
        cache_mb: int | None = None,
        shared_index: bool = True,
    ) -> None:
        """`url` as for `eventlog.open_store` (None: the environment's defaults, the file store
        if nothing is set); or an open `store` to share (teams, tests). `at` makes this a
        read-only view of the state as it was at that event id, position or UTC time.

        On a file or Redis log the read models are a shared index beside the log (see
        docs/architecture.md); `cache_mb` (or `?cache_mb=` in the URL, default 64) bounds the
        conversations this process keeps folded, and a session of many events is read from a
        snapshot of its conversation kept beside the index plus what came after it.
        `snapshots=False` keeps none: no snapshots of the read models at exit, none of
        sessions in the index. `shared_index=False` folds everything into this process
        instead (the memory store always does; an encrypted store over a file or Redis log has
        an index of its own, which holds decrypted read models of the users not forgotten:
        pass `shared_index=False` to keep those off disk, see docs/security.md)."""
        super().__init__(id=id)
        self._mirror = InMemoryDb()
        self._json_mirror = _RowsJsonDb()
        self._init_core(url, store, snapshots=snapshots, at=at, cache_mb=cache_mb, shared_index=shared_index)
        # the deserialized Agno runs of the sessions read most recently (bounded with the cache)
        self._run_cache = LruDict(max(16, 4 * self.cache_mb))

    def as_of(self, point: Point | str) -> EventLogDb:
        """A read-only EventLogDb showing the state just after `point` (event id, position,
        or UTC time). Writes to it raise `ReadOnlyStore`; the log is not touched."""
        return EventLogDb(store=self.store, at=point, snapshots=False)

    def forget_user(self, user_id: str, reason: str | None = None) -> None:
        """Crypto-shred a user (needs a store opened with encryption): destroy their key, record
        it, and purge what was derived from the decrypted log, so nothing of theirs is still
        served — the shared index is rebuilt from the log (whose fields of that user now read
        as erased) and scrubbed (see docs/security.md), or this process's fold is rebuilt; the
        caches of conversations and runs are dropped. (`store.forget_user` does the same for
        every EventLogDb open on that store object: each registered with it.) The rebuild
        reads the whole log: an erasure costs what `eventlog reindex` costs."""
        forget = getattr(self.store, "forget_user", None)
        if forget is None:
            raise ValueError("forget_user needs an encrypted store: "
                             "open_store(url, encrypt=True) or EVENTLOG_ENCRYPT=1")
        forget(user_id, reason)  # (calls `_after_erasure` of every db registered with the store)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.update({"type": "eventlog", "url": redact_url(self.store.url)})
        return data

    def __repr__(self) -> str:
        view = f", at={self.point!s}" if self.point is not None else ""
        return f"EventLogDb({redact_url(self.store.url)!r}{view})"
