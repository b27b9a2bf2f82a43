"""The read models as a reader sees them, served from a `ReadIndex` instead of the process.

`IndexedStates` answers the same questions as `ProjectionRunner.states` — `["sessions"]
.sessions.get(id)`, `["memories"].by_user.get(user)`, `["records"].tables.get(table)`, ... —
so code written against the in-process read models runs unchanged over the index, and adds
the queries the index answers without a scan (`session_page`, `memory_page`, ...). A
session's conversation is folded on demand from its own stream and kept in a bounded LRU
(`ConversationCache`): what one session holds is read when that session is asked for.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from eventlog import EventStore
from eventlog.errors import EventLogError
from eventlog.names import session_stream
from projections.conversation import (
    Conversation,
    ConversationProjection,
    ConversationState,
    SnapshotConversation,
)
from projections.index.base import MEMORY_TEXT_KIND, Ranked, ReadIndex
from projections.index.indexer import (
    HEAD_KIND,
    NAME_KIND,
    TRIGRAM_PREFIX,
    SessionHead,
    decode_memory,
    decode_muser,
    decode_session,
    decode_session_heads,
    decode_workflow,
    odd_orderings,
    session_orderings,
    trigrams,
    value_key_session,
    value_orderings,
)
from projections.index.runs import decode_run
from projections.memories import MemoryRow
from projections.sessions import SessionRow
from projections.workflows import WorkflowRow

T = TypeVar("T")

DEFAULT_CACHE_MB = 64
SNAPSHOT_KIND = "conv"  # index rows: session id -> a snapshot of its conversation (see ConversationCache)
# Trigrams a name search narrows its candidates by: the rarest and the next (its candidates'
# names are then read only where both hold them). Each is one more look per candidate; on
# SQLite at 50,000 names a third and fourth cost more than the names they spare.
SEARCH_PIECES = 2
SNAPSHOT_AFTER = 128  # events folded in one read before the conversation is kept as a snapshot
# A snapshot of another shape is not read. The form is the read model's schema with a
# revision of the snapshot's encoding: x01, runs as MessagePack (`SnapshotRunEntry`); the
# schema alone, runs as JSON binaries (still read: the entry decodes either).
SNAPSHOT_FORM = ConversationProjection.schema * 100 + 1
SNAPSHOT_FORMS_READ = (SNAPSHOT_FORM, ConversationProjection.schema)
_encode_snapshot = msgspec.msgpack.Encoder().encode
_decode_snapshot = msgspec.msgpack.Decoder(tuple[int, int, str, SnapshotConversation]).decode
log = logging.getLogger("projections.index")


def _occurrences(needle: str, ordering: str) -> list[set[int]]:
    """The character positions of each place the trigram of `ordering` is in `needle`."""
    piece = ordering[len(TRIGRAM_PREFIX):]
    return [set(range(i, i + 3)) for i in range(len(needle) - 2) if needle[i:i + 3] == piece]


def _spans(needle: str, piece: str) -> set[int]:
    """Every character position of `needle` that one of `piece`'s places covers."""
    return set().union(*_occurrences(needle, TRIGRAM_PREFIX + piece))


class RowMap(Mapping[str, T], Generic[T]):
    """A kind of index rows as a read-only mapping: lookups by key are one index read;
    iteration walks an ordering (insertion order, as the in-process dicts keep it)."""

    def __init__(self, index: ReadIndex, kind: str, decode: Callable[[bytes], T], ordering: str | list[str],
                 partition: Callable[[str], int | None] | None = None) -> None:
        self._index, self._kind, self._decode = index, kind, decode
        self._orderings = [ordering] if isinstance(ordering, str) else ordering  # (by insertion: merged)
        self._partition = partition or (lambda key: None)

    def get(self, key: str, default: Any = None) -> Any:
        if not isinstance(key, str):
            return default
        data = self._index.get(self._kind, key, self._partition(key))
        return default if data is None else self._decode(data)

    def get_with(self, key: str, read: Callable[[str, str, int | None], bytes | None]) -> T | None:
        """`get`, the row read by `read` instead (`Indexer.get_caught_up`: with the look at
        the log's end in the same round trip)."""
        if not isinstance(key, str):
            return None
        data = read(self._kind, key, self._partition(key))
        return None if data is None else self._decode(data)

    def __getitem__(self, key: str) -> T:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._index.get(self._kind, key, self._partition(key)) is not None

    def many(self, keys: list[str]) -> list[T]:
        """The rows of `keys` that exist, in that order (one index read)."""
        return [self._decode(d) for d in self._index.get_many(self._kind, keys) if d is not None]

    def __iter__(self) -> Iterator[str]:
        runs = [self._index.page(o, desc=False, offset=0, limit=None) for o in self._orderings]
        return iter([r.key for r in heapq.merge(*runs, key=lambda r: (r.score, r.key))])

    def __len__(self) -> int:
        return sum(self._index.count(o) for o in self._orderings)

    def values(self) -> list[T]:  # type: ignore[override]
        return self.many(list(self))

    def items(self) -> list[tuple[str, T]]:  # type: ignore[override]
        keys = list(self)
        data = self._index.get_many(self._kind, keys)
        return [(k, self._decode(d)) for k, d in zip(keys, data) if d is not None]


class ConversationCache:
    """Per session, the conversation folded from the session's stream, least recently used
    dropped first once the cached runs pass `max_bytes`. Each `get` reads the stream past
    the version it holds (another process's new runs are seen within one read).

    A session not cached here starts from its snapshot in the index when it has one: the
    conversation as folded up to some version, kept by the processes that fold it (a cold
    read of a long session, and a writer folding its own turns one by one) whenever enough of
    the stream has come since the last one (`_due`). A stream only grows, so a snapshot
    stays true of the versions it folded; only what came after is read and folded. A
    1,000-run session is then one row and a short tail instead of 2,000 events to read and
    fold — the difference between a cold `get_session` near Agno's own `from_dict` and one
    that also pays for the whole history. The snapshot also names the hash of the last event
    it folded; a tail whose first event does not continue that chain (an index left from
    another log) sends the read back to version 1."""

    def __init__(self, store: EventStore, max_bytes: int, stamp: Callable[[], object] | None = None,
                 index: ReadIndex | None = None, partition: Callable[[str], int | None] | None = None) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self._stamp = stamp  # the log's end as last seen: unchanged, a cached session is current
        # session -> (conversation, version, size, stamp, version of the latest snapshot known)
        self._lru: OrderedDict[str, tuple[Conversation | None, int, int, object, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._projection = ConversationProjection()
        self._index = index
        self._partition = partition or (lambda sid: None)

    def get(self, session_id: str, *, short: bool = False) -> Conversation | None:
        """The session's conversation, current with the log. `short`: the caller knows the
        stream holds fewer events than a snapshot needs (its session row's version), so no
        snapshot is looked for (on Redis a round trip saved on a process's first read of each
        short session). A hint only: a stream longer than the row shows (messages appended
        after its last session event) is then folded whole — the same conversation."""
        stamp = self._stamp() if self._stamp is not None else None
        with self._lock:
            cached = self._lru.get(session_id)
            if cached is not None and stamp is not None and cached[3] == stamp:
                self._lru.move_to_end(session_id)
                return cached[0]
            if cached is not None:
                del self._lru[session_id]
        conv, version, size, _, snapped = cached if cached is not None else (None, 0, 0, None, 0)
        chain = None
        if cached is None and self._index is not None and not short:
            conv, version, chain, size = self._snapshot(session_id)
            snapped = version
        stream = session_stream(session_id)
        events = self.store.read_for_fold(stream, version + 1)  # runs as stored JSON
        if chain is not None and events and events[0].prev_hash != chain:
            log.warning("read index %s: the snapshot of session %r does not continue into its stream; "
                        "folding the session from its start", self._index.where if self._index else "", session_id)
            conv, version, snapped, size = None, 0, 0, 0
            events = self.store.read_for_fold(stream, 1)
        if events:
            whole = conv is None
            state = ConversationState({session_id: conv} if conv is not None else {})
            self._projection.fold(events, state)
            conv = state.sessions.get(session_id)
            version = events[-1].version
            # The LRU's measure of the session. After a tail, the tail's size is added (an
            # upper bound: a run recorded again or deleted is not taken off): measuring the
            # whole conversation again would make every turn cost the session's length.
            # (A snapshot's measure is its encoded size: it holds what the entries do.)
            size = _size(conv) if whole or conv is None else size + _tail_size(events)
            if (conv is not None and self._due(version, snapped)
                    and self._save_snapshot(session_id, version, events[-1].hash, conv)):
                snapped = version
        with self._lock:
            self._bytes -= cached[2] if cached is not None else 0
            if session_id in self._lru:  # another thread folded it meanwhile: keep the newer
                self._bytes -= self._lru.pop(session_id)[2]
            self._lru[session_id] = (conv, version, size, stamp, snapped)
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._lru) > 1:
                _, (_, _, dropped, _, _) = self._lru.popitem(last=False)
                self._bytes -= dropped
        return conv

    def _snapshot(self, session_id: str) -> tuple[Conversation | None, int, str | None, int]:
        """(conversation, version, hash of the last event folded, its size for the LRU) from
        the index's snapshot, or (None, 0, None, 0) when there is none this code can read."""
        assert self._index is not None
        data = self._index.get_cached(SNAPSHOT_KIND, session_id, self._partition(session_id))
        if data is None:
            return None, 0, None, 0
        try:
            form, version, chain, conv = _decode_snapshot(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("read index %s: unreadable snapshot of session %r (%s); folding it from its stream",
                        self._index.where, session_id, exc)
            return None, 0, None, 0
        if form not in SNAPSHOT_FORMS_READ:  # another shape of the conversation read model
            return None, 0, None, 0
        # Its runs are views into `data` (`SnapshotRunEntry`): the buffer is what they hold.
        return conv, version, chain, 256 + len(data) + 160 * len(conv.entries) + 200 * len(conv.messages)

    def _due(self, version: int, snapped: int) -> bool:
        """Whether a conversation at `version`, whose latest snapshot is at `snapped` (0: none),
        is kept as a new snapshot: once `SNAPSHOT_AFTER` events and a quarter of the stream have
        come since. A process that writes a long session turn by turn (folding one event at a
        time) thus leaves snapshots too, and the first cold read after it stops folds at most
        about a fifth of the session; the snapshots a session ever writes add up to ~5x its
        final size (each one is a quarter larger than the last), not one per turn."""
        if self._index is None:
            return False
        since = version - snapped
        return since >= SNAPSHOT_AFTER and 4 * since >= snapped

    def _save_snapshot(self, session_id: str, version: int, chain: str, conv: Conversation) -> bool:
        assert self._index is not None
        try:
            data = _encode_snapshot((SNAPSHOT_FORM, version, chain, SnapshotConversation.of(conv)))
            return self._index.put_cached(SNAPSHOT_KIND, session_id, data, self._partition(session_id))
        except EventLogError as exc:  # a cache: the read it speeds up has already succeeded
            log.debug("read index: snapshot of session %r not kept: %s", session_id, exc)
            return False

    def peek(self, session_id: str) -> tuple[bool, Conversation | None]:
        """(whether the session is cached, its conversation as cached), reading nothing."""
        with self._lock:
            cached = self._lru.get(session_id)
        return (False, None) if cached is None else (True, cached[0])

    def clear(self) -> None:
        with self._lock:
            self._lru.clear()
            self._bytes = 0

    @property
    def cached_bytes(self) -> int:
        return self._bytes


def _tail_size(events: list[Any]) -> int:
    size = 0
    for event in events:
        run = getattr(event.payload, "run", None)
        if run is not None:
            size += (len(run) if isinstance(run, (bytes, msgspec.Raw)) else 1024) + 160
        else:
            size += 200
    return size


def _size(conv: Conversation | None) -> int:
    if conv is None:
        return 64
    return 256 + sum(len(e.body) + 160 for e in conv.entries.values()) + 200 * len(conv.messages)


class Recent(Protocol):
    """Told of each session row and conversation read by key (see
    `projections.index.fallback_reads.RecentSessions`)."""

    def note_row(self, row: SessionRow) -> None: ...

    def note_conversation(self, session_id: str, conv: Conversation | None) -> None: ...


class _NotedRowMap(RowMap[SessionRow]):
    """Session rows whose reads by key are told to a `Recent`."""

    def __init__(self, recent: Recent, *args: Any) -> None:
        super().__init__(*args)
        self._recent = recent

    def get(self, key: str, default: Any = None) -> Any:
        found = super().get(key)
        if found is None:
            return default
        self._recent.note_row(found)
        return found

    def get_with(self, key: str, read: Callable[[str, str, int | None], bytes | None]) -> SessionRow | None:
        found = super().get_with(key, read)
        if found is not None:
            self._recent.note_row(found)
        return found


class _Sessions:
    def __init__(self, rows: RowMap[SessionRow]) -> None:
        self.sessions = rows


class _Conversations:
    def __init__(self, cache: ConversationCache, recent: Recent | None) -> None:
        self.sessions = _ConversationMap(cache, recent)


class _ConversationMap:
    def __init__(self, cache: ConversationCache, recent: Recent | None = None) -> None:
        self._cache = cache
        self._recent = recent

    def get(self, session_id: str, default: Any = None) -> Any:
        conv = self._cache.get(session_id) if isinstance(session_id, str) else None
        if self._recent is not None and isinstance(session_id, str):
            self._recent.note_conversation(session_id, conv)
        return default if conv is None else conv

    def of_row(self, row: SessionRow) -> Conversation | None:
        """The conversation of the session `row` is of (see `ConversationCache.get`'s `short`)."""
        conv = self._cache.get(row.session_id, short=row.version < SNAPSHOT_AFTER)
        if self._recent is not None:
            self._recent.note_conversation(row.session_id, conv)
        return conv


class _ByUser(Mapping[str, dict[str, None]]):
    def __init__(self, index: ReadIndex) -> None:
        self._index = index

    def __getitem__(self, user: str) -> dict[str, None]:
        keys = [r.key for r in self._index.page(f"m|u={user}|seq", desc=False, offset=0, limit=None)]
        if not keys:
            raise KeyError(user)
        return dict.fromkeys(keys)

    def __iter__(self) -> Iterator[str]:
        return iter([r.key for r in self._index.page("mu|last", desc=True, offset=0, limit=None)])

    def __len__(self) -> int:
        return self._index.count("mu|last")


class _Memories:
    def __init__(self, index: ReadIndex) -> None:
        self.memories: RowMap[MemoryRow] = RowMap(index, "memory", decode_memory, "m|all|seq")
        self.by_user = _ByUser(index)


class _Records:
    def __init__(self, index: ReadIndex) -> None:
        self.tables = _Tables(index)


class _Tables:
    def __init__(self, index: ReadIndex) -> None:
        self._index = index

    def get(self, table: str, default: Any = None) -> Any:
        """The table as a `RecordTable`: a mapping whose lookups read one row (whole-table
        iteration still works, and reads the table)."""
        from projections.index.record_view import RecordTable  # (it builds on RowMap, below)

        return RecordTable(self._index, table)


class _Workflows:
    def __init__(self, index: ReadIndex) -> None:
        self.workflows: RowMap[WorkflowRow] = RowMap(index, "wf", decode_workflow, "wf|seq")


class IndexedStates(Mapping[str, Any]):
    """`runner.states`, served from an index (see the module docstring)."""

    def __init__(self, store: EventStore, index: ReadIndex, cache_bytes: int = DEFAULT_CACHE_MB << 20,
                 stamp: Callable[[], object] | None = None, *, snapshots: bool = True,
                 recent: Recent | None = None) -> None:
        """`snapshots`: sessions' conversations start from (and leave) snapshots in the index
        (see `ConversationCache`); False folds each session from its first event. `recent` is
        told of every session row and conversation read by key (a fallback store keeps them
        for an outage)."""
        self.store = store
        self.index = index
        partition_of = getattr(index, "partition_of", None)
        session_partition = ((lambda sid: partition_of(session_stream(sid))) if partition_of is not None
                             else None)
        rows_of: tuple[Any, ...] = (index, "session", decode_session, session_orderings(None, "all", "seq"),
                                    session_partition)
        self.session_rows: RowMap[SessionRow] = (RowMap(*rows_of) if recent is None
                                                 else _NotedRowMap(recent, *rows_of))
        self.conversations = ConversationCache(store, cache_bytes, stamp, index if snapshots else None,
                                               session_partition)
        self._states: dict[str, Any] = {
            "sessions": _Sessions(self.session_rows),
            "conversation": _Conversations(self.conversations, recent),
            "memories": _Memories(index),
            "records": _Records(index),
            "workflows": _Workflows(index),
        }

    def __getitem__(self, name: str) -> Any:
        return self._states[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._states)

    def __len__(self) -> int:
        return len(self._states)

    # --- queries the index answers without a scan ------------------------------------------

    def session_page(self, ordering: str | list[str], *, desc: bool, offset: int,
                     limit: int | None) -> list[SessionRow]:
        """A page of sessions of one ordering, or of the union of several (disjoint) ones,
        merged: each gives at most its first offset + limit."""
        return self.session_rows.many(self._keys(ordering, desc, offset, limit))

    def walk_sessions(self, ordering: str | list[str], *, desc: bool, chunk: int = 500) -> Iterator[SessionRow]:
        """Every session of an ordering (or a union of them) in order, their rows read a chunk
        at a time. (The keys are read once: a union read window by window re-read every
        ordering from its start for each window.)"""
        keys = self.session_keys(ordering, desc=desc)
        for at in range(0, len(keys), chunk):
            yield from self.session_rows.many(keys[at:at + chunk])

    def session_heads(self, ordering: str | list[str] | None, *,
                      chunk: int = 5000) -> Iterator[list[tuple[float, str, SessionHead]]]:
        """(insertion number, session id, `SessionHead`) of every session of `ordering`(s), a
        chunk at a time (what is held at once is a chunk), from the `HEAD_KIND` rows: read
        with the ordering; or, for None, every session's, in no particular order, read by
        the kind's own key (cheaper than joining an ordering that holds most of them)."""
        if ordering is None:
            for part in self.index.scan_chunks(HEAD_KIND, chunk):
                heads = decode_session_heads([data for _, data in part])
                yield [(float(seq), key, head) for (key, _), (seq, head) in zip(part, heads)]
            return
        for o in [ordering] if isinstance(ordering, str) else ordering:
            at = 0
            while pairs := self.index.page_rows(o, desc=False, kind=HEAD_KIND, offset=at, limit=chunk):
                heads = decode_session_heads([data for _, data in pairs])
                yield [(ranked.score, ranked.key, head) for (ranked, _), (_, head) in zip(pairs, heads)]
                at += chunk

    def session_value_page(self, kind: str | None, column: str, *, desc: bool, offset: int, limit: int,
                           accept: Callable[[SessionHead], bool] | None = None,
                           accepted: int = 0) -> list[str] | None:
        """The ids of a page of the sessions of `kind` sorted by `column` (one of
        `VALUE_SORTS`) as InMemoryDb's `apply_sorting` sorts them, read from the value
        orderings (`value_members`): what is read is the page. `accept`: only the sessions
        whose head it accepts count (a user's or an agent's among all of a type; `accepted`
        says how many it takes) — the walk then reads heads a chunk at a time until the page
        is full, so it costs the page over the share of sessions accepted. None when a
        session's value is one no value ordering holds (`odd_orderings`), or when the walk
        read as many heads as `accept` takes without filling the page (values that put the
        scope's sessions late in the order): the caller sorts the scope's heads instead, so
        a walk never costs more than twice that sort."""
        if self.count(odd_orderings(kind, column)):
            return None
        orderings = value_orderings(kind, column, desc=desc)
        if accept is None:
            return [value_key_session(r.key) for r in self._ranked(orderings, desc, offset, limit)]
        want = offset + limit
        # (the first chunk sized to what the share accepted should need; each next one twice)
        chunk = min(int(want * self.count(orderings) / max(accepted, 1) * 1.25) + 16, 5000)
        found: list[str] = []
        at = 0
        while len(found) < want:
            if at >= accepted + chunk:
                return None
            window = self._ranked(orderings, desc, at, chunk)
            if not window:
                break
            at += len(window)
            ids = [value_key_session(r.key) for r in window]
            held = [(sid, data) for sid, data in zip(ids, self.index.get_many(HEAD_KIND, ids)) if data is not None]
            heads = decode_session_heads([data for _, data in held])  # (the chunk in one call)
            found += [sid for (sid, _), (_, head) in zip(held, heads) if accept(head)]
            chunk = min(chunk * 2, 5000)
        return found[offset:want]

    def session_keys(self, ordering: str | list[str], *, desc: bool) -> list[str]:
        """Every session id of an ordering (or a union of them) in order: keys, no rows."""
        return self._keys(ordering, desc, 0, None)

    def session_keys_named(self, ordering: str | list[str], *, desc: bool, needle: str) -> list[str]:
        """`session_keys` less the sessions whose `search_name` does not contain `needle`
        (lower case), tested on the name rows (`NAME_KIND`): a few bytes per session, not
        its row. The same order: each ordering filtered, then merged and (ascending time
        orderings) each second's rows turned around, as `_keys` does for the whole."""
        if not needle:
            return self.session_keys(ordering, desc=desc)
        orderings = [ordering] if isinstance(ordering, str) else ordering
        among = self._trigram_orderings(needle, orderings)
        if among is None:
            return []
        runs = [self.index.page_containing(o, desc=desc, kind=NAME_KIND, needle=needle.encode(), among=among)
                for o in orderings]
        window = runs[0] if len(runs) == 1 else list(heapq.merge(*runs, key=lambda r: (r.score, r.key), reverse=desc))
        if desc or orderings[0].endswith("|seq"):
            return [r.key for r in window]
        return self._ascending_ties(orderings, 0, None, window)

    def _trigram_orderings(self, needle: str, orderings: list[str]) -> list[str] | None:
        """The trigram orderings (`TRIGRAM_PREFIX`) of `needle`'s a search narrows its
        candidates by: the one that holds fewest sessions first, when it holds fewer than half
        of what `orderings` do (the search then tests its sessions that the next rarest
        hold too, not the scope's), and up to `SEARCH_PIECES` in all, each under half of
        the scope (a piece nearly every name has narrows nothing); None when one holds
        none (nothing can match); [] to test the scope's names (a needle under three
        characters, or trigrams as common as that). All pieces are counted in one read."""
        pieces = sorted(TRIGRAM_PREFIX + t for t in trigrams(needle))
        if not pieces:
            return []
        counted = self.index.counts(pieces + orderings)
        held, scope = sorted(zip(counted, pieces)), sum(counted[len(pieces):])
        if held[0][0] == 0:
            return None
        if held[0][0] * 2 >= scope:
            return []
        # Then the rarest piece that shares no character with those taken (pieces of one word
        # overlap and come together: "owl" adds nothing to " ow"), else the next rarest; never
        # one most of the scope holds (it would test nearly every candidate for nothing).
        taken, spans = [held[0][1]], _spans(needle, held[0][1][len(TRIGRAM_PREFIX):])
        rest = [name for n, name in held[1:] if n * 2 < scope]
        while rest and len(taken) < SEARCH_PIECES:
            apart = [name for name in rest if any(not spans & s for s in _occurrences(needle, name))]
            pick = (apart or rest)[0]
            rest.remove(pick)
            taken.append(pick)
            spans |= _spans(needle, pick[len(TRIGRAM_PREFIX):])
        return taken

    def _keys(self, ordering: str | list[str], desc: bool, offset: int, limit: int | None) -> list[str]:
        orderings = [ordering] if isinstance(ordering, str) else ordering
        window = self._ranked(orderings, desc, offset, limit)
        if desc or orderings[0].endswith("|seq"):
            return [r.key for r in window]
        return self._ascending_ties(orderings, offset, limit, window)

    def _ranked(self, orderings: list[str], desc: bool, offset: int, limit: int | None) -> list[Ranked]:
        if len(orderings) == 1:
            return self.index.page(orderings[0], desc=desc, offset=offset, limit=limit)
        want = None if limit is None else offset + limit
        runs = [self.index.page(o, desc=desc, offset=0, limit=want) for o in orderings]
        merged = heapq.merge(*runs, key=lambda r: (r.score, r.key), reverse=desc)
        return list(itertools.islice(merged, offset, want))

    def _ascending_ties(self, orderings: list[str], offset: int, limit: int | None,
                        window: list[Ranked]) -> list[str]:
        """An ascending page of a time ordering (`tie_score`) in InMemoryDb's order.

        A time ordering's score carries a fraction that falls with the insertion number, so
        walked descending, rows tied on the second come in insertion order — what a stable
        descending sort gives. Walked ascending they would come newest-inserted first, but a
        stable ascending sort (InMemoryDb's `apply_sorting`, SqliteDb's rowid order) keeps
        them in insertion order too. So each second's rows are turned around: those wholly
        inside the page in place, and a second that runs over an edge of the page is read
        whole (its rows only: `between` that second) to know which of them fall on this page.
        The same positions hold the same seconds either way, so pages stay disjoint and
        complete."""
        groups: list[list[Ranked]] = []
        for r in window:
            if groups and int(groups[-1][0].score) == int(r.score):
                groups[-1].append(r)
            else:
                groups.append([r])
        keys: list[str] = []
        for i, group in enumerate(groups):
            over_start = i == 0 and offset > 0
            over_end = i == len(groups) - 1 and limit is not None and len(window) == limit
            if not (over_start or over_end):
                keys += [r.key for r in reversed(group)]
                continue
            second = float(int(group[0].score))
            runs = [self.index.between(o, second, second + 0.5, desc=False, offset=0, limit=None)
                    for o in orderings]
            whole = [r.key for r in heapq.merge(*runs, key=lambda r: (r.score, r.key))]
            start = whole.index(group[0].key) if group[0].key in whole else 0
            keys += whole[::-1][start:start + len(group)]
        return keys

    def count(self, ordering: str | list[str]) -> int:
        return sum(self.index.count(o) for o in ([ordering] if isinstance(ordering, str) else ordering))

    def run_session(self, run_id: str) -> str | None:
        data = self.index.get("run", run_id)
        return decode_run(data)[0] if data is not None else None

    def run_page(self, ordering: str, *, offset: int, limit: int | None) -> list[tuple[str, str]]:
        """(session id, run id) of a page of runs in `get_runs`'s order (see
        projections.index.runs)."""
        keys = [r.key for r in self.index.page(ordering, desc=False, offset=offset, limit=limit)]
        return [(key.split("|", 2)[1], key.split("|", 3)[3]) for key in keys]

    def run_rows(self, ordering: str) -> list[tuple[str, tuple[Any, ...]]]:
        """Every run of `ordering`, in order, as (run id, its index row): what a filter the
        ordering does not answer (a status) walks — index rows, not the runs."""
        keys = [r.key for r in self.index.page(ordering, desc=False, offset=0, limit=None)]
        ids = [key.split("|", 3)[3] for key in keys]
        return [(rid, decode_run(d)) for rid, d in zip(ids, self.index.get_many("run", ids)) if d is not None]

    def memory_page(self, ordering: str, *, desc: bool, offset: int, limit: int | None) -> list[MemoryRow]:
        keys = self._keys(ordering, desc, offset, limit)
        rows: RowMap[MemoryRow] = self._states["memories"].memories
        return rows.many(keys)

    def memories_containing(self, ordering: str, *, desc: bool, needle: str, offset: int,
                            limit: int | None) -> tuple[list[MemoryRow], int]:
        """A page of the memories of `ordering` whose `memory_text` contains `needle` (lower
        case, not empty), in the order `memory_page` gives, and how many there are: the test
        runs in the index over the text rows (`MEMORY_TEXT_KIND`), and only the page's
        memory rows are read."""
        rows: RowMap[MemoryRow] = self._states["memories"].memories
        whole = ordering.startswith("m|all|")
        if desc or ordering.endswith("|seq"):  # (the index's order is the answer's: only the page crosses)
            window, total = self.index.window_containing(ordering, desc=desc, kind=MEMORY_TEXT_KIND,
                                                         needle=needle.encode(), offset=offset, limit=limit,
                                                         whole=whole)
            return rows.many([r.key for r in window]), total
        # ascending by time: each second's matches turned around (`_ascending_ties`), so all of them
        found = self.index.page_containing(ordering, desc=desc, kind=MEMORY_TEXT_KIND, needle=needle.encode(),
                                           whole=whole)
        keys = self._ascending_ties([ordering], 0, None, found)
        return rows.many(keys[offset:] if limit is None else keys[offset:offset + limit]), len(keys)

    def memories_of_scope(self, scope: str) -> list[MemoryRow]:
        """Every memory of one scope (`u=<user>`, `a=<agent>`, `tm=<team>`), in insertion order."""
        keys = [r.key for r in self.index.page(f"m|{scope}|seq", desc=False, offset=0, limit=None)]
        rows: RowMap[MemoryRow] = self._states["memories"].memories
        return rows.many(keys)

    def memories_of_topics(self, topics: list[str], user_id: str | None) -> list[MemoryRow]:
        """The memories with any of `topics` (or, when fewer, all of `user_id`'s), of
        `user_id`'s when given, in insertion order: a superset of what a topics filter keeps,
        read from the topics' (or the user's) orderings, not the table."""
        scopes = [f"m|t={t}|seq" for t in dict.fromkeys(topics)]
        if scopes and user_id is not None and self.count(f"m|u={user_id}|seq") <= self.count(scopes):
            scopes = [f"m|u={user_id}|seq"]
        ranked = sorted({r.key: r for o in scopes for r in self.index.page(o, desc=False, offset=0, limit=None)}
                        .values(), key=lambda r: r.score)
        rows: RowMap[MemoryRow] = self._states["memories"].memories
        found = rows.many([r.key for r in ranked])
        # (the user's own only: memories without a user are the user "" 's, as `by_user` has them)
        return found if user_id is None else [r for r in found if (r.user_id or "") == user_id]

    def topics(self) -> list[str]:
        return sorted(key for key, _ in self.index.scan("topic"))

    def memory_stats(self, user_id: str | None, offset: int, limit: int | None) -> tuple[list[dict[str, Any]], int]:
        """Per user: how many memories and the latest update, newest first (paged)."""
        if user_id is not None:
            data = self.index.get("muser", user_id)
            if data is None or not user_id:
                return [], 0
            count, last = decode_muser(data)
            return ([{"user_id": user_id, "total_memories": count, "last_memory_updated_at": last}][offset:]
                    [:limit], 1)
        total = self.index.count("mu|last")
        page = self.index.page("mu|last", desc=True, offset=offset, limit=limit)
        users = [r.key for r in page]
        out = []
        for user, data in zip(users, self.index.get_many("muser", users)):
            if data is not None:
                count, last = decode_muser(data)
                out.append({"user_id": user, "total_memories": count, "last_memory_updated_at": last})
        return out, total
