"""The memory-manager facade of the original design, on top of the event log.

    manager = get_memory_manager()                 # Redis -> file -> in-memory, from the env
    manager.user_memory.remember("customer_123", "VIP, prefers email", category="crm")
    manager.user_memory.recall("customer_123")     # -> "VIP, prefers email"
    manager.save_session_id("payready-20250919-abc123"); manager.load_session_id()
    MemoryPatterns.save_workflow_state(manager, session_id="s1", workflow="deploy", state={"step": 3})
    manager.log_conversation("s1", "user", "hello")

Same names and settings as the original (REDIS_URL, MEMORY_DIR, USE_MEMORY,
PAYREADY_OFFLINE_MODE / EVENTLOG_OFFLINE), but every call appends typed events, so what the
facade writes is auditable, replayable and visible to Agno agents sharing the same log.
"""

from __future__ import annotations

import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from eventlog import (
    Actor,
    EventStore,
    MemoryStore,
    MessageAppended,
    SessionIdSaved,
    StoreUnavailable,
    UserMemoryAdded,
    UserMemoryDeleted,
    UserMemoryUpdated,
    WorkflowStateSaved,
    WorkflowStepCompleted,
    new_event,
    open_store,
    redact_url,
)
from eventlog.names import session_stream, user_stream, workflow_stream
from eventlog.open import default_dir, env_flag, offline_mode
from projections import ProjectionRunner, WorkflowRow, all_projections, workflow_key
from projections.index import Indexer, decrypts, open_index
from projections.index.fallback_reads import FallbackReads, fallback_primary
from projections.index.views import DEFAULT_CACHE_MB, IndexedStates

log = logging.getLogger("adapters.memory_manager")

SESSION_IDS_STREAM = "facade/session-ids"


@dataclass
class MemorySettings:
    """What the original design read from its settings object; None means: from the env."""

    redis_url: str | None = None
    memory_dir: str | None = None
    use_memory: bool | None = None
    offline: bool | None = None
    user_id: str = "default"
    agent_id: str | None = None

    @classmethod
    def from_env(cls) -> MemorySettings:
        use = os.environ.get("USE_MEMORY")
        return cls(
            redis_url=os.environ.get("REDIS_URL") or None,
            memory_dir=os.environ.get("MEMORY_DIR") or None,
            use_memory=None if use is None else env_flag("USE_MEMORY"),
            offline=offline_mode(),
        )


def _settings(settings: Any) -> MemorySettings:
    base = MemorySettings.from_env()
    if settings is None:
        return base
    for name in ("redis_url", "memory_dir", "use_memory", "offline", "user_id", "agent_id"):
        value = settings.get(name) if isinstance(settings, dict) else getattr(settings, name, None)
        if value is not None:
            setattr(base, name, value)
    return base


def get_memory_manager(settings: Any = None) -> MemoryManager:
    """The manager for these settings (an object or dict with redis_url, memory_dir,
    use_memory, offline), falling back Redis -> file -> in-memory and saying which it chose."""
    s = _settings(settings)
    if s.offline or s.use_memory is False:
        return MemoryManager(MemoryStore(), backend="memory", user_id=s.user_id, agent_id=s.agent_id)
    memory_dir = s.memory_dir or str(default_dir())
    if s.redis_url:
        try:
            store = open_store(s.redis_url, fallback=os.path.join(memory_dir, "fallback"))
            return MemoryManager(store, backend="redis", user_id=s.user_id, agent_id=s.agent_id)
        except (StoreUnavailable, OSError, ValueError) as exc:
            log.warning("Redis at %s unusable (%s); using the file store", redact_url(s.redis_url), exc)
    try:
        return MemoryManager(open_store(memory_dir), backend="file", user_id=s.user_id, agent_id=s.agent_id)
    except (StoreUnavailable, OSError) as exc:
        log.warning("file store at %s unusable (%s); memory will not survive a restart", memory_dir, exc)
        return MemoryManager(MemoryStore(), backend="memory", user_id=s.user_id, agent_id=s.agent_id)


@dataclass
class UserMemory:
    """`manager.user_memory`: key -> value facts about a user, grouped by category."""

    manager: MemoryManager
    user_id: str = "default"

    def _memory_id(self, key: str, user_id: str) -> str:
        return f"{user_id}:{key}"

    def remember(self, key: str, value: Any, category: str = "general", *, user_id: str | None = None,
                 agent_id: str | None = None) -> None:
        """Store (or replace) the fact `key` for the user; the old value stays in the log."""
        user = user_id or self.user_id
        memory_id = self._memory_id(key, user)
        old = self.manager._memory_row(memory_id)
        fields = {"key": key, "category": category, "agent_id": agent_id or self.manager.agent_id}
        if old is None:
            payload: Any = UserMemoryAdded(memory_id=memory_id, user_id=user, memory=value, topics=[category],
                                           fields=fields)
        else:
            payload = UserMemoryUpdated(memory_id=memory_id, user_id=user, memory=value, old_memory=old.memory,
                                        topics=[category], fields=fields)
        self.manager._append(user_stream(user), payload, Actor(agent_id=fields["agent_id"], user_id=user))

    def recall(self, key: str, default: Any = None, *, user_id: str | None = None) -> Any:
        row = self.manager._memory_row(self._memory_id(key, user_id or self.user_id))
        return default if row is None else row.memory

    def recall_all(self, category: str | None = None, *, user_id: str | None = None) -> dict[str, Any]:
        """Every fact of the user (optionally of one category), key -> value."""
        user = user_id or self.user_id
        with self.manager._reading() as states:
            mem = states["memories"]
            rows = [mem.memories[m] for m in mem.by_user.get(user, {})]
        return {str(r.fields.get("key", r.memory_id)): r.memory for r in rows
                if category is None or category in r.topics}

    def forget(self, key: str, *, user_id: str | None = None) -> bool:
        user = user_id or self.user_id
        memory_id = self._memory_id(key, user)
        if self.manager._memory_row(memory_id) is None:
            return False
        self.manager._append(user_stream(user), UserMemoryDeleted(memory_id=memory_id, user_id=user),
                             Actor(agent_id=self.manager.agent_id, user_id=user))
        return True


class MemoryManager:
    """One log shared by everything the facade and Agno agents (via `.db`) write."""

    def __init__(self, store: EventStore, *, backend: str = "file", user_id: str = "default",
                 agent_id: str | None = None) -> None:
        self.store = store
        self.backend = backend
        self.agent_id = agent_id
        self._purged: str | None = None  # the index's purge mark the cached conversations are of
        primary = fallback_primary(store)
        index = open_index(store) if primary is None else None
        self._indexer = Indexer(store, index) if index is not None else None
        # Redis with the file fallback: the shared index in Redis (see fallback_reads)
        self._fallback = FallbackReads(store, primary, DEFAULT_CACHE_MB << 20) if primary is not None else None
        if self._indexer is not None and index is not None:  # the shared read index of a file/Redis log
            self._states: Any = IndexedStates(store, index, stamp=self._indexer.stamp)
            self.runner = ProjectionRunner(store, [])
            if decrypts(store):  # an encrypted log: see EventLogDb.forget_user
                store.on_erasure(self._after_erasure)  # type: ignore[attr-defined]
                self._indexer.catch_up()
                if self._indexer.needs_purge():  # a purge a dead process left undone
                    self._after_erasure("")
        elif self._fallback is not None:
            self.runner = ProjectionRunner(store, [])
            if decrypts(store):  # an encrypted log over Redis with the file fallback
                store.on_erasure(self._after_erasure)  # type: ignore[attr-defined]
                self._fallback.catch_up()
                if not self._fallback.degraded and self._fallback.indexer().needs_purge():
                    self._after_erasure("")  # (a purge a dead process left undone)
        else:
            self.runner = ProjectionRunner(store, all_projections())
        self.user_memory = UserMemory(self, user_id=user_id)
        self._db: Any = None

    # --- plumbing -------------------------------------------------------------------------

    def _append(self, stream: str, payload: Any, actor: Actor) -> None:
        self.store.append(stream, [new_event(payload, actor=actor)])

    def _after_erasure(self, user_id: str) -> None:
        """A user was forgotten (or an erasure found unpurged at open): purge the shared index
        unless another reader already has, and drop the conversations cached from before."""
        if self._fallback is not None:
            self._fallback.after_erasure()
            self._purged = self._fallback.purge_mark()
            return
        assert self._indexer is not None
        self._indexer.after_erasure()
        self._purged = self._indexer.purged
        self._states.conversations.clear()

    def _purge_seen(self, mark: str | None, states: Any) -> None:
        """A new purge mark (another process's erasure rebuilt the index): drop the cached
        conversations (the first mark read is only noted)."""
        if mark != self._purged:
            if self._purged is not None:
                states.conversations.clear()
            self._purged = mark

    def _reading(self) -> Any:
        if self._indexer is not None:
            self._indexer.catch_up()
            self._purge_seen(self._indexer.purged, self._states)
            return nullcontext(self._states)
        if self._fallback is not None:
            self._fallback.catch_up()
            self._purge_seen(self._fallback.purge_mark(), self._fallback.states)
            return self._fallback.reading()
        self.runner.catch_up()
        return self.runner.reading_all()

    def _memory_row(self, memory_id: str) -> Any:
        with self._reading() as states:
            return states["memories"].memories.get(memory_id)

    @property
    def db(self) -> Any:
        """An Agno `EventLogDb` on the same log, for `Agent(db=manager.db)`."""
        if self._db is None:
            from adapters.agno.db import EventLogDb

            self._db = EventLogDb(store=self.store)
        return self._db

    # --- sessions -------------------------------------------------------------------------

    def save_session_id(self, session_id: str, key: str = "default") -> None:
        """Remember which session to resume after a restart."""
        self._append(SESSION_IDS_STREAM, SessionIdSaved(session_id=session_id, key=key),
                     Actor(agent_id=self.agent_id, session_id=session_id))

    def load_session_id(self, key: str = "default") -> str | None:
        """The session id last saved under `key`, or None."""
        found = None
        for event in self.store.read(SESSION_IDS_STREAM):
            p = event.payload
            if isinstance(p, SessionIdSaved) and p.key == key:
                found = p.session_id
        return found

    # --- conversation logging -------------------------------------------------------------

    def log_conversation(self, session_id: str, role: str, content: Any, *, agent_id: str | None = None,
                         run_id: str | None = None) -> None:
        self._append(session_stream(session_id),
                     MessageAppended(session_id=session_id, role=role, content=content, run_id=run_id,
                                     name=agent_id or self.agent_id),
                     Actor(agent_id=agent_id or self.agent_id, session_id=session_id, run_id=run_id,
                           user_id=self.user_memory.user_id))

    def get_conversation(self, session_id: str) -> list[dict[str, Any]]:
        """The logged messages of a session, oldest first."""
        with self._reading() as states:
            conv = states["conversation"].sessions.get(session_id)
            messages = list(conv.messages) if conv is not None else []
        return [{"role": m.role, "content": m.content, "agent_id": m.agent_id, "run_id": m.run_id,
                 "at": datetime.fromtimestamp(m.at, timezone.utc).isoformat()} for m in messages]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
        self.runner.stop()
        if self._indexer is not None:
            self._indexer.index.close()
        if self._fallback is not None:
            self._fallback.close()
        self.store.close()


@dataclass
class MemoryPatterns:
    """The original design's patterns as static helpers (workflow state, resumable steps)."""

    manager: MemoryManager | None = field(default=None)

    @staticmethod
    def save_workflow_state(manager: MemoryManager, *, session_id: str | None, workflow: str,
                            state: dict[str, Any]) -> None:
        manager._append(workflow_stream(workflow, session_id),
                        WorkflowStateSaved(workflow=workflow, session_id=session_id, state=state),
                        Actor(agent_id=manager.agent_id, workflow_id=workflow, session_id=session_id))

    @staticmethod
    def load_workflow_state(manager: MemoryManager, *, session_id: str | None, workflow: str) -> dict[str, Any] | None:
        row = MemoryPatterns.workflow(manager, session_id=session_id, workflow=workflow)
        return dict(row.state) if row is not None else None

    @staticmethod
    def complete_step(manager: MemoryManager, *, session_id: str | None, workflow: str, step: int,
                      name: str | None = None, output: Any = None, total: int | None = None,
                      agent_id: str | None = None) -> None:
        manager._append(workflow_stream(workflow, session_id),
                        WorkflowStepCompleted(workflow=workflow, session_id=session_id, step=step, name=name,
                                              output=output, total=total),
                        Actor(agent_id=agent_id or manager.agent_id, workflow_id=workflow, session_id=session_id))

    @staticmethod
    def workflow(manager: MemoryManager, *, session_id: str | None, workflow: str) -> WorkflowRow | None:
        """State and step history (`next_step` says where to resume)."""
        with manager._reading() as states:
            return states["workflows"].workflows.get(workflow_key(workflow, session_id))
