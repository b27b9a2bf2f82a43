"""`FallbackReads`: the shared Redis index for a fallback store (Redis with a file behind it),
and what a process answers from while Redis is away.

**Redis reachable, nothing pending** (nearly always): reads are the Redis index's, as for a
`redis://` log. The index folds the primary's log only, under the primary's numbering, so it
is the one every process on that Redis shares. Events waiting in the file (written while
Redis was away) are not in it until they are replayed: a read that finds some while Redis
answers replays them first (`FallbackStore.sync`, which the health thread would do within a
second anyway), so no read misses a write that is on this machine.

**Redis away**: nothing of the index can be read. The process then answers from a fold of
its own, started from what it last read of the index — the sessions it read recently (row and
conversation, with its own writes to them since; `RecentSessions`, bounded) — and followed by
every event pending in the file. So an agent's current session carries on where it stopped.
Anything the process had not read lately shows only what was written during the outage (as
for a process started during one). Once Redis is back and the pending events are replayed,
that fold is dropped and reads go to the index again.

This is the one place where a fallback store's reads differ from a `redis://` log's; the
rest (`Indexer`, `IndexedStates`, the adapters' queries) is shared.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec

from eventlog import Event, EventStore
from eventlog.errors import StoreUnavailable
from eventlog.names import session_stream
from eventlog.store import Cursor
from projections.conversation import Conversation, ConversationProjection, ConversationState
from projections.index.base import decrypts, open_index
from projections.index.indexer import Indexer
from projections.index.views import IndexedStates
from projections.sessions import SessionRow, SessionsProjection, SessionsState

log = logging.getLogger("projections.index")

RECENT_SESSIONS = 256  # sessions whose last read is kept for an outage
RECENT_WRITES = 64  # own events kept per such session; a session written more without a read is dropped


def fallback_primary(store: Any) -> Any:
    """The primary of `store` when it is a fallback store whose primary can hold the shared
    index (Redis), else None. (By class name, as `open_index`.) Of an encrypted fallback store
    (`REDIS_URL` with `EVENTLOG_ENCRYPT=1`), the primary as that store reads it: decrypted
    with the same keys and fields, so its index is the decrypted one (see `open_index`)."""
    if decrypts(store):
        primary = fallback_primary(store.inner)
        if primary is None:
            return None
        from eventlog.stores.encrypted import EncryptedStore

        return EncryptedStore(primary, store.keys, extra_fields=store.fields)
    primary = getattr(store, "primary", None)
    if "FallbackStore" not in {cls.__name__ for cls in type(store).__mro__} or primary is None:
        return None
    return primary if "RedisStreamStore" in {cls.__name__ for cls in type(primary).__mro__} else None


class RecentSessions:
    """The sessions this process read lately: each one's row as last read, whether its
    conversation was read too, and the events this process wrote to it since. Only an outage
    reads it (`seeds`). It is bounded in sessions and in events per session, and holds no
    conversation of its own: at `seeds` each one is taken (copied) from the conversation
    cache, so what an outage can carry on with is what the cache's bound (`cache_mb`) holds —
    a session whose conversation the cache has dropped is not seeded."""

    def __init__(self, max_sessions: int = RECENT_SESSIONS, max_writes: int = RECENT_WRITES) -> None:
        self.max_sessions = max_sessions
        self.max_writes = max_writes
        self._lock = threading.Lock()
        # session id -> [row, whether its conversation was read, own events since the row was read]
        self._held: OrderedDict[str, list[Any]] = OrderedDict()

    def note_row(self, row: SessionRow) -> None:
        with self._lock:
            held = self._held.pop(row.session_id, None)
            self._held[row.session_id] = [row, held[1] if held is not None else False, []]
            while len(self._held) > self.max_sessions:
                self._held.popitem(last=False)

    def note_conversation(self, session_id: str, conv: Conversation | None) -> None:
        with self._lock:
            held = self._held.get(session_id)
            if held is not None:
                held[1] = True

    def note_written(self, events: list[Event]) -> None:
        if not events or not events[0].stream.startswith("session/"):
            return
        sid = events[0].stream[len("session/"):]
        with self._lock:
            held = self._held.get(sid)
            if held is None or events[0].stream != session_stream(sid):
                return
            held[2].extend(events)
            if len(held[2]) > self.max_writes:  # (too much to replay onto a stale read: drop it)
                del self._held[sid]

    def clear(self) -> None:
        with self._lock:
            self._held.clear()

    def seeds(self, cached: Callable[[str], tuple[bool, Conversation | None]],
              ) -> tuple[SessionsState, ConversationState]:
        """The held sessions as read-model states: each row copied and its conversation copied
        from `cached` (the conversation cache: (held, conversation)), with this process's
        writes since its read folded on top."""
        with self._lock:
            held = [(sid, row, read, list(events)) for sid, (row, read, events) in self._held.items()]
        sessions, conversations = SessionsState({}), ConversationState({})
        sessions_projection, conversation_projection = SessionsProjection(), ConversationProjection()
        for sid, row, read, events in held:
            found, conv = cached(sid) if read else (True, None)
            if not found:  # (the cache dropped it: a row without its runs would lose them)
                continue
            sessions.sessions[sid] = msgspec.structs.replace(row, state=dict(row.state), fields=dict(row.fields))
            if conv is not None:
                conversations.sessions[sid] = msgspec.structs.replace(
                    conv, entries=dict(conv.entries), messages=list(conv.messages))
            for event in events:
                sessions_projection.apply(sessions, event)
                conversation_projection.apply(conversations, event)
        return sessions, conversations


class ReadAgain(Exception):
    """A combined catch-up-and-read found Redis away (`FallbackReads.caught_up_reader`): ask
    again with `catch_up()` and `reading()`, which now answer from this process's fold."""


class FallbackReads:
    """The read side of an `EventLogDb` (or `MemoryManager`) over a fallback store: see the
    module docstring. `catch_up()` before reading, `reading()` to read, `fold_appended()`
    after this process's own appends."""

    def __init__(self, store: EventStore, primary: EventStore, cache_bytes: int, *, snapshots: bool = True) -> None:
        from projections.index.redis import RedisIndex

        self.store: Any = store
        self.primary = primary
        index = open_index(primary)  # (no I/O: Redis may be away at open; the decrypted one for an encrypted log)
        assert isinstance(index, RedisIndex)
        self.index = index
        self._erasure_pending = False  # an erasure made while Redis was away: purge once it is back
        self.recent = RecentSessions()
        self._lock = threading.RLock()  # mode changes
        self._indexer: Indexer | None = None
        self.states = IndexedStates(primary, self.index, cache_bytes, self._stamp, snapshots=snapshots,
                                    recent=self.recent)
        self._runner: Any = None  # the in-process fold while Redis is away (a ProjectionRunner)
        self._closed = False

    # --- which reads -----------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        """Whether reads are answered by this process's own fold (Redis away)."""
        return self._runner is not None

    def _stamp(self) -> object:
        return self._indexer.stamp() if self._indexer is not None else None

    def indexer(self) -> Indexer:
        """The primary's index folder, made on first use (it claims the index's schema: I/O)."""
        if self._indexer is None:
            with self._lock:
                if self._indexer is None:
                    self._indexer = Indexer(self.primary, self.index)
        return self._indexer

    def catch_up(self) -> None:
        """Bring the read models of the current mode up to the log, changing mode when Redis
        went away or came back. Errors other than Redis being away propagate (a lost log
        raises, as every read of the fallback store does)."""
        if self._runner is None and not self.store.unreachable:
            try:
                self._index_catch_up()
                return
            except StoreUnavailable as exc:
                self.store.note_unreachable()
                self._degrade(exc)
        with self._lock:
            if self._runner is not None and not self.store.unreachable:
                try:
                    self._index_catch_up()
                except StoreUnavailable:
                    self.store.note_unreachable()
                else:
                    self._recover()
                    return
            if self._runner is None:
                self._degrade(None)
            self._runner.catch_up()

    def caught_up_reader(self) -> Callable[[str, str, int | None], bytes | None] | None:
        """A read of one index row that also brings the index up to the log, in one round
        trip (`Indexer.get_caught_up`): what `catch_up()` then a read cost two of. None while
        this process answers from its own fold (Redis away). Redis found away by the read
        raises `ReadAgain` once the next reads are sent to that fold, so the caller asks
        again the usual way (`catch_up()` and `reading()`) and is answered, as it would
        have been had `catch_up()` found Redis away."""
        if self._runner is not None or self.store.unreachable:
            return None

        def read(kind: str, key: str, partition: int | None) -> bytes | None:
            try:
                if self.store.has_pending():
                    self.store.sync()
                return self.indexer().get_caught_up(kind, key, partition)
            except StoreUnavailable as exc:
                self.store.note_unreachable()
                raise ReadAgain(str(exc)) from exc

        return read

    def _index_catch_up(self) -> None:
        if self.store.has_pending():  # (written while Redis was away, here or by another process)
            self.store.sync()
        self.indexer().catch_up()

    def _degrade(self, why: Exception | None) -> None:
        from projections import ProjectionRunner, all_projections

        with self._lock:
            if self._runner is not None:
                return
            sessions, conversations = self.recent.seeds(self.states.conversations.peek)
            runner = ProjectionRunner(self.store, all_projections(), use_snapshots=False)
            seen = dict(self._indexer.stamp()) if self._indexer is not None else {}
            runner.seed({"sessions": sessions, "conversation": conversations}, Cursor(seen))
            self._runner = runner
            log.warning("%s: the read index in Redis cannot be read (%s); answering from this process's "
                        "%d recent sessions and the events written meanwhile until it is back",
                        self.index.where, why or "Redis away", len(sessions.sessions))

    def _recover(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.stop()
            self.states.conversations.clear()  # (folded over while away: read again)
            self.recent.clear()
            log.warning("%s: Redis is back; reads use the shared read index again", self.index.where)
        if self._erasure_pending:  # (the index is caught up: the erasure, replayed, is in it)
            self.indexer().after_erasure()
            self._erasure_pending = False

    def after_erasure(self) -> None:
        """An encrypted log's user was just forgotten (`EncryptedStore.on_erasure`): purge the
        primary's decrypted index now if Redis answers, else once it is back; either way drop
        what this process holds from before (its conversation cache, its recent sessions and
        its outage fold, which the next read rebuilds from the log)."""
        with self._lock:
            if self._runner is None and not self.store.unreachable:
                try:
                    self._index_catch_up()
                    self.indexer().after_erasure()
                except StoreUnavailable:
                    self.store.note_unreachable()
                    self._erasure_pending = True
            else:
                self._erasure_pending = True
            self.states.conversations.clear()
            self.recent.clear()
            if self._runner is not None:
                self._runner.stop()
                self._runner = None
                self._degrade(None)

    def purge_mark(self) -> str | None:
        """The index's purge mark as last read (see `Indexer.purged`), None before any read."""
        return self._indexer.purged if self._indexer is not None else None

    @contextmanager
    def reading(self) -> Iterator[Any]:
        """The read models of the current mode, held still while the caller reads. A read of
        the index that finds Redis gone raises (as on a `redis://` log) and sends the next
        reads to this process's own fold."""
        runner = self._runner
        if runner is not None:
            with runner.lock:
                yield runner.states
            return
        try:
            yield self.states
        except StoreUnavailable:
            self.store.note_unreachable()
            raise

    def fold_appended(self, events: list[Event]) -> None:
        """After this process's own append: into the index when Redis took it, else into this
        process's fold (the file took it: Redis is away, or events are pending)."""
        if not events:
            return
        if self._runner is not None or any(e.partition >= self.primary.partitions for e in events):
            # (the file took them: Redis is away, or events were pending — then, Redis
            # answering, `catch_up` replays them and folds them into the index)
            self.catch_up()
            return
        self.recent.note_written(events)
        try:
            self.indexer().fold_appended(events)
        except StoreUnavailable as exc:  # stored in Redis, not yet in its index: caught up later
            log.debug("%s: own append not folded into the index (%s)", self.index.where, exc)
            self.store.note_unreachable()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._runner is not None:
            self._runner.stop()
        self.index.close()
