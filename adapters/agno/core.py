"""The plumbing every EventLogDb table shares: the store, the live read models, and writes.

Writes are appended to the log and then folded in (read-your-writes); reads catch the read
models up first (cheap: only what others appended since) and answer from folded state, never
by replaying the log. A time-travel view folds the log up to a point once and never moves.
"""

from __future__ import annotations

import atexit
import json
import logging
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from eventlog import Actor, EventStore, InvalidEvent, InvalidURL, Payload, ReadOnlyStore, new_event, open_store
from eventlog.aio_bridge import KeyedLocks, lock_for
from eventlog.events import Event
from eventlog.memory import MemoryStore
from projections import ProjectionRunner, all_projections
from projections.index import Indexer, decrypts, open_index
from projections.index.fallback_reads import FallbackReads, fallback_primary
from projections.index.views import DEFAULT_CACHE_MB, IndexedStates
from projections.timetravel import Point, events_at, parse_point

log = logging.getLogger("adapters.agno")


class EventLogCore:
    """Store + runner + write path. Mixed into `EventLogDb` with the per-table methods."""

    store: EventStore
    runner: ProjectionRunner
    read_only: bool

    def _init_core(self, url: str | None, store: EventStore | None, *, snapshots: bool,
                   at: Point | str | None, cache_mb: int | None = None, shared_index: bool = True) -> None:
        url, url_cache_mb = _take_cache_mb(url)
        cache_mb = cache_mb if cache_mb is not None else url_cache_mb
        self.cache_mb = cache_mb or DEFAULT_CACHE_MB
        self._owns_store = store is None
        self.store = store if store is not None else open_store(url)
        # Held across appends (I/O): a BridgeLock on a store serving asyncio natively. Writes
        # of one session take `_session_lock(session_id)` only; the db-wide `_write_lock` is
        # for the rest (memories, other tables, multi-session work). Order: `_write_lock`
        # before a session's lock, never after (a session writer never takes `_write_lock`).
        self._write_lock = lock_for(self.store, reentrant=True)
        self._session_lock = KeyedLocks(self.store)
        self.read_only = at is not None
        self.point = parse_point(at) if isinstance(at, str) else at
        self._closed = False
        self.indexer: Indexer | None = None
        self._purged: str | None = None  # the index's purge mark this process's caches are of
        self._fallback: FallbackReads | None = None
        primary = fallback_primary(self.store) if self.point is None and shared_index else None
        index = open_index(self.store) if self.point is None and shared_index and primary is None else None
        if primary is not None:
            # Redis with the file behind it: the shared index in Redis while Redis answers, a
            # fold of this process's recent sessions and the file's pending events while it
            # is away (see projections.index.fallback_reads).
            self._fallback = FallbackReads(self.store, primary, self.cache_mb << 20, snapshots=snapshots)
            self._fallback.catch_up()
            self.runner = ProjectionRunner(self.store, [], use_snapshots=False)  # (nothing to fold)
        elif index is not None:
            # The shared read index (SQLite beside a file log, keys beside a Redis log): this
            # process folds only what the index has not seen yet, and reads what it asks for.
            self.indexer = Indexer(self.store, index)
            self.indexer.catch_up()
            self._states: Any = IndexedStates(self.store, index, self.cache_mb << 20,
                                              self.indexer.stamp, snapshots=snapshots)
            self.runner = ProjectionRunner(self.store, [], use_snapshots=False)  # (nothing to fold)
        elif self.point is None:
            self.runner = ProjectionRunner(self.store, all_projections(), use_snapshots=snapshots)
            self.runner.catch_up()
            if snapshots and not isinstance(self.store, MemoryStore):
                # Agno never closes its db, so without this a restart would fold the whole log
                # again (seconds for a million events); a weak reference, so the registration
                # does not keep the db alive. (A memory store ends with the process: nothing
                # to keep.)
                atexit.register(_snapshot_at_exit, weakref.ref(self))
        else:
            self.runner = ProjectionRunner(self.store, all_projections(), use_snapshots=False)
            for event in events_at(self.store, self.point):
                self.runner.apply(event)
        if self.point is None and decrypts(self.store):
            self.store.on_erasure(self._after_erasure)  # type: ignore[attr-defined]
            if self._purge_left_undone():  # (a process died between an erasure and its purge)
                log.warning("read index: an erasure (forget_user) was not followed by its purge; "
                            "rebuilding the index from the log now")
                self._after_erasure("")

    # --- erasures -------------------------------------------------------------------------

    def _purge_mark(self) -> str | None:
        """The shared index's purge mark as last read (None: no shared index, or not read)."""
        if self.indexer is not None:
            return self.indexer.purged
        return self._fallback.purge_mark() if self._fallback is not None else None

    def _purge_left_undone(self) -> bool:
        """Whether the shared index holds an erasure no purge followed (see Indexer.needs_purge)."""
        if self.indexer is not None:
            return self.indexer.needs_purge()
        if self._fallback is not None and not self._fallback.degraded:  # (Redis answers)
            return self._fallback.indexer().needs_purge()
        return False

    def _after_erasure(self, user_id: str) -> None:
        """`EncryptedStore.forget_user` just destroyed a key and recorded it: purge what this
        db derived from the decrypted log. The first db of the process to get here rebuilds
        the shared index (`Indexer.after_erasure`); others on the same index find it purged and only
        drop their caches. Without an index, this process's fold is rebuilt."""
        with self._write_lock:
            if self.indexer is not None:
                self.indexer.after_erasure()
            elif self._fallback is not None:
                self._fallback.after_erasure()
            else:
                self.runner = ProjectionRunner(self.store, all_projections(), use_snapshots=False)
                self.runner.catch_up()
            self._purged = self._purge_mark()
            self._drop_read_caches()

    # --- reading --------------------------------------------------------------------------

    def _catch_up(self) -> None:
        """Bring the read models up to the log (errors propagate: Agno needs read failures
        to raise)."""
        if self.indexer is not None:
            self.indexer.catch_up()
        elif self._fallback is not None:
            self._fallback.catch_up()
        elif self.point is None:
            self.runner.catch_up()
        self._note_purge()

    def _note_purge(self) -> None:
        """After a catch-up: a `forget_user` (here or elsewhere) that rebuilt the shared index
        drops what this process cached from it."""
        mark = self._purge_mark()
        if mark != self._purged:
            if self._purged is not None:
                self._drop_read_caches()
            self._purged = mark

    def _caught_up_reader(self) -> Callable[[str, str, int | None], bytes | None] | None:
        """A read of one index row that also brings the read models up to the log, in one
        round trip on Redis (`Indexer.get_caught_up`; SQLite looks at its file, then reads),
        the fallback's included while Redis answers (a read that finds it away raises
        `ReadAgain`: ask again through `_reading()`); None where catching up is apart
        (`_reading`): the fallback's outage fold and as_of, which fold in this process."""
        indexer = self.indexer
        if indexer is not None:
            caught_up: Callable[[str, str, int | None], bytes | None] | None = indexer.get_caught_up
        else:
            caught_up = self._fallback.caught_up_reader() if self._fallback is not None else None
        if caught_up is None:
            return None

        def read(kind: str, key: str, partition: int | None) -> bytes | None:
            data = caught_up(kind, key, partition)
            self._note_purge()
            return data

        return read

    def _drop_read_caches(self) -> None:
        """Forget what this process cached from the index (conversations, deserialized runs):
        after an erasure it may hold what is no longer there."""
        if self.indexer is not None:
            self._states.conversations.clear()
        elif self._fallback is not None:
            self._fallback.states.conversations.clear()
        run_cache = getattr(self, "_run_cache", None)
        if run_cache is not None:
            run_cache.clear()

    @contextmanager
    def _reading(self, *, caught_up: bool = False) -> Iterator[Any]:
        """The read models, caught up with the log and held still while the caller reads.
        `caught_up`: the caller has just caught up or folded its own append in this same
        call (the row it reads back after a write), so the look at the log's end — a round
        trip on Redis — is skipped."""
        if not caught_up:
            self._catch_up()
        if self.indexer is not None:
            yield self._states  # each index read is consistent on its own; rows are copies
            return
        if self._fallback is not None:
            with self._fallback.reading() as states:
                yield states
            return
        with self.runner.lock:
            yield self.runner.states

    # --- writing --------------------------------------------------------------------------

    def _emit(self, stream: str, payloads: Sequence[Payload], actor: Actor,
              causation_id: str | None = None) -> list[Event]:
        """Append the payloads as one atomic batch and fold them in before returning."""
        if self.read_only:
            raise ReadOnlyStore(f"this EventLogDb is a read-only view as of {self.point!s}")
        if not payloads:
            return []
        events = [new_event(p, actor=actor, causation_id=causation_id) for p in payloads]
        try:
            recorded = self.store.append(stream, events)
        except InvalidEvent as exc:
            if "not JSON-encodable" not in str(exc):
                raise
            # Agno objects sometimes carry values JSON cannot hold (datetimes in nested dicts,
            # enums, pydantic models): store their string forms, as Agno's JsonDb does.
            events = [_jsonable_event(e) for e in events]
            recorded = self.store.append(stream, events)
        if self.indexer is not None:
            self.indexer.fold_appended(recorded)
        elif self._fallback is not None:
            self._fallback.fold_appended(recorded)
        else:
            self.runner.catch_up()
        return recorded

    def close(self) -> None:
        """Save snapshots of the read models (so the next start is quick) and release.
        Idempotent; also done (without the release) when the process exits normally."""
        if self._closed:
            return
        self.save_snapshots()
        self._closed = True
        self.runner.stop()
        if self.indexer is not None:
            self.indexer.index.close()
        if self._fallback is not None:
            self._fallback.close()
        if self._owns_store:
            self.store.close()

    def save_snapshots(self, *, failure_level: int = logging.WARNING) -> None:
        """Snapshot the read models now (a snapshot is an optimisation: failures are logged)."""
        if (self.point is None and not self.read_only and not self._closed and self.indexer is None
                and self._fallback is None):
            try:
                self.runner.save_snapshots()
            except Exception as exc:
                log.log(failure_level, "could not save projection snapshots: %s", exc)


def _take_cache_mb(url: str | None) -> tuple[str | None, int | None]:
    """`?cache_mb=N` (the read side's cache per process) is ours, not the store's: take it out."""
    if url is None or "cache_mb=" not in url:
        return url, None
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    mb = [v for k, v in query if k == "cache_mb"]
    try:
        value = int(mb[-1])
        if value <= 0:
            raise ValueError
    except ValueError:
        raise InvalidURL(f"cache_mb must be a positive whole number of MiB, got {mb[-1]!r}") from None
    rest = urlencode([(k, v) for k, v in query if k != "cache_mb"])
    return urlunsplit(parts._replace(query=rest)), value


def _snapshot_at_exit(ref: weakref.ReferenceType[EventLogCore]) -> None:
    """At exit the store may already be closed by its owner or Redis gone: the next start
    then folds the log, which is correct, so that is not worth a warning."""
    db = ref()
    if db is not None:
        db.save_snapshots(failure_level=logging.DEBUG)


def _jsonable_event(event: Event) -> Event:
    import msgspec

    payload = event.payload
    plain = json.loads(json.dumps(msgspec.structs.asdict(payload), default=_default))
    plain.pop("type", None)
    return msgspec.structs.replace(event, payload=type(payload)(**plain))


def _default(value: Any) -> Any:
    for attr in ("model_dump", "to_dict"):
        fn = getattr(value, attr, None)
        if callable(fn):
            return fn()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "value"):
        return value.value
    return str(value)


def actor_of(row: dict[str, Any], *, session_id: str | None = None, run_id: str | None = None,
             user_id: str | None = None) -> Actor:
    """Who is writing: the agent/team/workflow/user named by the Agno object being written."""
    return Actor(
        agent_id=row.get("agent_id"),
        team_id=row.get("team_id"),
        workflow_id=row.get("workflow_id"),
        user_id=user_id if user_id is not None else row.get("user_id"),
        session_id=session_id if session_id is not None else row.get("session_id"),
        run_id=run_id,
    )
