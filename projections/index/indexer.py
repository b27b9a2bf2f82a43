"""`Indexer`: folds the log's tail into a `ReadIndex` with the read models' own folds.

For each batch of new events of one partition, it loads only the rows those events touch
(a session's row for a session's events, a memory's row for a memory's events, ...), folds
the batch over them with the same projection code the in-process read models and time
travel use (`SessionsProjection`, `UserMemoriesProjection`, `WorkflowsProjection`), and
writes back what changed, with the orderings queries page through and the new cursor, in
one index transaction. So an index row always equals the fold of the log up to the cursor
(tests compare every row with a fresh fold), and the work per event is what that event
touches, never the size of the log.

What is indexed (kind: key -> row; orderings by score, ties by key):

    session:  session id -> (seq, SessionRow)   s|<type>|<scope>|<seq|upd|cre>
              scope: `all`, `u=<user>`, `a=`/`t=`/`w=<agent/team/workflow id>`;
              and s|*|c=<any owner id>|...
    sname:    session id -> its name, lower-cased (named sessions; what a name search reads)
    shead:    session id -> (seq, SessionHead)   (what a sort by an id column reads)
    run:      run id -> (session, key, ...)      (where to look for a run; see projections.index.runs)
    gr:       run ordering key -> run id          g|all, g|a=/t=/w=<component>, g|s=<session>, g|odd
    memory:   memory id -> (seq, MemoryRow)      m|all|<seq|upd|cre>, m|u=<user>|<seq|upd|cre>, m|t=<topic>|seq
    muser:    user -> (count, last update)        mu|last
    topic:    topic -> how many memories have it
    wf:       workflow key -> (seq, WorkflowRow)  wf|seq
    rec:<t>:  record key -> (seq, row)            r|<t>|seq, and per table its scopes and
              sorts (r|<t>|<col>=<value>|seq, r|<t>|<sort>...: see projections.index.tables)
    tstat:    session -> its trace statistics    ts|last (ts|odd: a time that cannot be ordered)
    sstat:    [span name, kind] -> span statistics   ss|all (spans they cannot keep: r|spans|stat|odd)
    lstat:    user -> learning statistics         lu|user, lu|last-, lu|last+ (r|learnings|stat|odd)
    lstat:<hex type>: the same over one learning type   lu|t=<type>|user, ...
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from eventlog import (
    Event,
    EventStore,
    RecordDeleted,
    RecordUpserted,
    RunDeleted,
    RunRecorded,
    SessionDeleted,
    UserForgotten,
    UserMemoriesCleared,
    UserMemoryAdded,
    UserMemoryDeleted,
    UserMemoryUpdated,
    WorkflowStateSaved,
    WorkflowStepCompleted,
)
from eventlog.aio_bridge import Broadcast, lock_for
from eventlog.ids import new_id
from eventlog.store import Cursor
from projections.fold import epoch_of
from projections.index.base import INDEX_SCHEMA, KEY_ORDERED, MEMORY_TEXT_KIND, IndexTxn, Member, ReadIndex
from projections.index.runs import fold_runs
from projections.index.tables import (
    LearningStat,
    SpanStat,
    learning_groups,
    learning_stat_add,
    learning_stat_kind,
    learning_stat_members,
    record_members,
    scope_ordering,
    scope_text,
    scope_trace_stats,
    span_group,
    span_group_stats,
    span_stat_add,
    span_stat_remove,
    trace_stats_affected,
    trace_stats_step,
    user_learning_stats,
)
from projections.memories import MemoriesState, MemoryRow, UserMemoriesProjection, memory_text
from projections.sessions import _SESSION_EVENTS, SessionRow, SessionsProjection, SessionsState
from projections.workflows import WorkflowRow, WorkflowsProjection, WorkflowsState, workflow_key

log = logging.getLogger("projections.index")

COMMIT_EVERY = 2000  # events per index transaction during a long catch-up

_enc = msgspec.msgpack.Encoder()
_session_dec = msgspec.msgpack.Decoder(tuple[int, SessionRow])
_memory_dec = msgspec.msgpack.Decoder(tuple[int, MemoryRow])
_workflow_dec = msgspec.msgpack.Decoder(tuple[int, WorkflowRow])
_record_dec = msgspec.msgpack.Decoder(tuple[int, dict[str, Any]])
_muser_dec = msgspec.msgpack.Decoder(tuple[int, int, int])
_tstat_dec = msgspec.msgpack.Decoder(tuple[int, dict[str, Any], float | None])
_sstat_dec = msgspec.msgpack.Decoder(tuple[int, int, int, int | None, int, str | None])
_lstat_dec = msgspec.msgpack.Decoder(tuple[int, int, int | None])

_SESSION_TYPES = frozenset(_SESSION_EVENTS)
_MEMORY_TYPES = frozenset({UserMemoryAdded, UserMemoryUpdated, UserMemoryDeleted, UserMemoriesCleared, UserForgotten})
_WORKFLOW_TYPES = frozenset({WorkflowStateSaved, WorkflowStepCompleted})


def decode_session(data: bytes) -> SessionRow:
    return _session_dec.decode(data)[1]


HEAD_COLUMNS = ("session_id", "session_type", "agent_id", "team_id", "workflow_id", "user_id")
"""The id columns of an Agno session dict a `SessionHead` can sort by."""


class _RowFields(msgspec.Struct, gc=False):
    """Of a `SessionRow.fields`, what the head needs: the columns the session type has
    (`__columns__`, as the Agno adapter records them) and any of `HEAD_COLUMNS` among the
    extra columns (the session dict lets those win). Every other key is skipped unread."""

    columns: list[str] | None = msgspec.field(default=None, name="__columns__")
    session_id: Any = msgspec.UNSET
    session_type: Any = msgspec.UNSET
    agent_id: Any = msgspec.UNSET
    team_id: Any = msgspec.UNSET
    workflow_id: Any = msgspec.UNSET
    user_id: Any = msgspec.UNSET


class _RowHead(msgspec.Struct, kw_only=True, gc=False):
    """A stored `SessionRow` read for its head only (the attribute names are the row's)."""

    session_id: str
    session_type: str = "agent"
    agent_id: str | None = None
    team_id: str | None = None
    workflow_id: str | None = None
    user_id: str | None = None
    name: str | None = None
    created_at: int = 0
    fields: _RowFields = msgspec.field(default_factory=_RowFields)


class SessionHead(msgspec.Struct, array_like=True, gc=False):
    """What `get_sessions` filters on and sorts by an id column with, of one session (the
    attribute names are `SessionRow`'s): its ids, name and creation time; `absent`, those of
    `HEAD_COLUMNS` its session dict has no key for (a workflow session has no `agent_id`);
    `extra`, those among its extra columns, which the dict shows instead. Stored compact (an
    array, ~100 bytes) and decoded fast: a sort by `user_id` reads one per session."""

    session_id: str
    session_type: str
    agent_id: str | None
    team_id: str | None
    workflow_id: str | None
    user_id: str | None
    name: str | None
    created_at: int
    absent: tuple[str, ...] = ()
    extra: dict[str, Any] | None = None


_row_head_dec = msgspec.msgpack.Decoder(tuple[int, _RowHead])
_head_dec = msgspec.msgpack.Decoder(tuple[int, SessionHead])
_heads_dec = msgspec.msgpack.Decoder(list[tuple[int, SessionHead]])

HEAD_KIND = "shead"
"""Rows of each session's (seq, `SessionHead`), by session id: what a sort by an id column
reads (~100 bytes a session instead of its row; rewritten only when one of them changes)."""


def head_bytes(row_data: bytes) -> bytes:
    """The `HEAD_KIND` row of a stored session row (`(seq, SessionRow)` bytes): its insertion
    number and head, decoded from those bytes, so it holds exactly what the row does."""
    seq, row = _row_head_dec.decode(row_data)
    keys = row.fields.columns
    absent = tuple(c for c in HEAD_COLUMNS if keys and c not in keys and c != "session_type")
    extra = {c: v for c in HEAD_COLUMNS if (v := getattr(row.fields, c)) is not msgspec.UNSET}
    return _enc.encode((seq, SessionHead(row.session_id, row.session_type, row.agent_id, row.team_id, row.workflow_id,
                                         row.user_id, row.name, row.created_at, absent, extra or None)))


def head_sort_value(head: SessionHead, column: str) -> Any:
    """What sorting the session dicts by `column` (one of `HEAD_COLUMNS`) compares, from the
    session's `SessionHead`: the dict's value (an extra column wins), None where the dict
    has no such key."""
    if column in head.absent:
        return None
    if head.extra is not None and column in head.extra:
        return head.extra[column]
    return getattr(head, column)


VALUE_SORTS = ("session_id", "agent_id", "team_id", "workflow_id", "user_id")
"""The id columns every session of a type is ordered by value in (`value_members`): a sort
by one of them over a type's sessions is a page read, not a walk of every head."""

_SEQ_TOP = (1 << 48) - 1  # insertion numbers are below 2^48 (12 hex digits)


def value_orderings(kind: str | None, column: str, *, desc: bool) -> list[str]:
    """The value ordering(s) of `column` that hold the sessions of `kind` (None: any), for an
    ascending or a descending walk (see `value_members`)."""
    mark = "V" if desc and column != "session_id" else "v"
    return [f"{KEY_ORDERED}s|{k}|all|{mark}:{column}" for k in ((kind,) if kind is not None else SESSION_TYPES)]


def odd_orderings(kind: str | None, column: str) -> list[str]:
    """Where the sessions whose `column` value no value ordering can hold are listed (a value
    that is not a string, holds a control character below U+0002 or does not encode): while
    any is, a sort by that column cannot be read from the value orderings."""
    return [f"{KEY_ORDERED}s|{k}|all|x:{column}" for k in ((kind,) if kind is not None else SESSION_TYPES)]


def value_members(seq: int, head: SessionHead) -> list[tuple[str, str]]:
    """(ordering, key) of each value ordering a session is in, within its type: per column of
    `VALUE_SORTS`, an ascending one (`v:`) and a descending one (`V:`), each scored 0 so that
    both backends order it by key (bytes of UTF-8: code point order, as Python compares
    strings). A key is "1" value U+0001 seq-hex id, or "2" seq-hex id for None, so that
    walked ascending it gives InMemoryDb's stable sort on (is None, value) — ties in
    insertion order, None last — and `V:`, whose seq-hex counts down, walked descending gives
    the stable reverse: None first, ties still in insertion order. `session_id` is unique
    (its one ordering serves both ways); a session whose value cannot be held is in the
    column's odd ordering instead (`odd_orderings`)."""
    kind, sid = head.session_type, head.session_id
    up, down = f"{seq:012x}{sid}", f"{_SEQ_TOP - seq:012x}{sid}"
    base = f"{KEY_ORDERED}s|{kind}|all|"
    out: list[tuple[str, str]] = []
    for column in VALUE_SORTS:
        value = head_sort_value(head, column)
        if column == "session_id":
            if value == sid and _holdable(sid):
                out.append((f"{base}v:{column}", f"1{sid}\x01{up}"))
            else:
                out.append((f"{base}x:{column}", sid))
        elif value is None:
            out += [(f"{base}v:{column}", f"2{up}"), (f"{base}V:{column}", f"2{down}")]
        elif type(value) is str and _holdable(value):
            out += [(f"{base}v:{column}", f"1{value}\x01{up}"), (f"{base}V:{column}", f"1{value}\x01{down}")]
        else:
            out.append((f"{base}x:{column}", sid))
    return out


def _holdable(text: str) -> bool:
    if "\x00" in text or "\x01" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:  # (a lone surrogate)
        return False
    return True


def value_key_session(key: str) -> str:
    """The session id of a value ordering's key (`value_members`)."""
    if key[0] == "2":
        return key[13:]
    return key[key.index("\x01") + 13:]


def session_seq(data: bytes) -> int:
    """The insertion number of a stored session row."""
    return int(_row_head_dec.decode(data)[0])


def decode_session_head(data: bytes) -> tuple[int, SessionHead]:
    """A `HEAD_KIND` row: (seq, head)."""
    return _head_dec.decode(data)


def decode_session_heads(rows: list[bytes]) -> list[tuple[int, SessionHead]]:
    """`decode_session_head` of each row, in one call: the rows joined behind a MessagePack
    array header are one array of them (a walk of 50,000 heads was mostly call overhead)."""
    return _heads_dec.decode(b"\xdd" + len(rows).to_bytes(4, "big") + b"".join(rows))


def decode_memory(data: bytes) -> MemoryRow:
    return _memory_dec.decode(data)[1]


def decode_workflow(data: bytes) -> WorkflowRow:
    return _workflow_dec.decode(data)[1]


def decode_record(data: bytes) -> dict[str, Any]:
    return _record_dec.decode(data)[1]


def decode_record_seq(data: bytes) -> tuple[int, dict[str, Any]]:
    """A record row with its place in the table's order (its insertion number)."""
    seq, row = _record_dec.decode(data)
    return seq, row


def decode_muser(data: bytes) -> tuple[int, int]:
    """A user's (memory count, latest update)."""
    count, last, _ = _muser_dec.decode(data)
    return count, last


def decode_tstat(data: bytes) -> tuple[int, dict[str, Any], float | None]:
    """A session's trace statistics: (first insertion number, JsonDb's entry, last time in µs)."""
    return _tstat_dec.decode(data)


def decode_sstat(data: bytes) -> SpanStat:
    """A span group's statistics (see `projections.index.tables.SpanStat`)."""
    return _sstat_dec.decode(data)


def decode_lstat(data: bytes) -> LearningStat:
    """A user's learning statistics (see `projections.index.tables.LearningStat`)."""
    return _lstat_dec.decode(data)


def stat_members(found: tuple[int, dict[str, Any], float | None]) -> list[Member]:
    return [("ts|last", found[2])] if found[2] is not None else [("ts|odd", float(found[0]))]


def _session_seq(txn: IndexTxn, sid: str) -> int | None:
    data = txn.get("session", sid)
    return None if data is None else session_seq(data)


def _move_values(txn: IndexTxn, old: bytes | None, new: bytes | None) -> None:
    """Move a session in its value orderings from where its old head put it to where the new
    one does (either None: not there)."""
    before = dict(value_members(*decode_session_head(old))) if old is not None else {}
    after = dict(value_members(*decode_session_head(new))) if new is not None else {}
    for name, key in before.items():
        if after.get(name) != key:
            txn.reorder(key, [(name, 0.0)], ())
    for name, key in after.items():
        if before.get(name) != key:
            txn.reorder(key, (), [(name, 0.0)])


def tie_score(seconds: int, seq: int) -> float:
    """A time ordering's score: the time plus a fraction that falls as `seq` (insertion order)
    grows, so rows tied on the second come newest-first in the order they were inserted — what
    a stable descending sort gives, as Agno's InMemoryDb sorts (ascending pages list such ties
    newest-inserted first). The fraction is a multiple of 2^-21: exact in a double for times
    in seconds below 2^31."""
    return seconds + 0.5 - (seq % (1 << 20)) / (1 << 21)


SESSION_TYPES = ("agent", "team", "workflow")  # Agno's `SessionType`s


def session_orderings(kind: str | None, scope: str, sort: str) -> list[str]:
    """The ordering(s) that hold the sessions of `kind` (None: any) in `scope`, by `sort`."""
    if scope.startswith("c="):
        return [f"s|*|{scope}|{sort}"]
    return [f"s|{k}|{scope}|{sort}" for k in ((kind,) if kind is not None else SESSION_TYPES)]


NAME_KIND = "sname"
"""Rows of each named session's `search_name`, by session id: what a `session_name` search
reads instead of every session row (a few bytes per session, not a decoded row)."""


def search_name(row: SessionRow) -> str:
    """What a `session_name` filter matches against: the name, lower-cased ("": none)."""
    return (row.name or "").lower()


TRIGRAM_PREFIX = KEY_ORDERED + "n|"
"""Orderings `k:n|<three characters>` (`KEY_ORDERED`): the sessions whose `search_name`
holds those three characters (score 0, so by id): a name search of three characters or more reads the rarest
of its needle's, not every name (see `IndexedStates.session_keys_named`)."""


def trigrams(text: str) -> set[str]:
    """The three-character pieces of `text` that name an ordering (none holding a control
    character: names stay plain text on both backends)."""
    return {text[i:i + 3] for i in range(len(text) - 2) if text[i:i + 3].isprintable()}


def trigram_members(name: str) -> list[Member]:
    """The trigram orderings a session of `search_name` `name` is in."""
    return [(TRIGRAM_PREFIX + t, 0.0) for t in trigrams(name)]


def session_members(seq: int, row: SessionRow) -> list[Member]:
    """Every ordering a session row is in (see the module docstring): within its type, all
    sessions, its user's, and its component's by role (`a=`, `t=`, `w=`); across types, its
    component's whatever the role (`c=`), as Agno's `component_id` filter without a type
    means any of the three. (All sessions or a user's across types are the union of the
    per-type orderings, merged when read.)"""
    kind = row.session_type
    scopes = [(kind, "all")]
    if row.user_id is not None:
        scopes.append((kind, f"u={row.user_id}"))
    for owner in {row.agent_id, row.team_id, row.workflow_id} - {None}:
        scopes.append(("*", f"c={owner}"))
    for role, owner in (("a", row.agent_id), ("t", row.team_id), ("w", row.workflow_id)):
        if owner is not None:
            scopes.append((kind, f"{role}={owner}"))
    upd, cre = tie_score(row.updated_at, seq), tie_score(row.created_at, seq)
    out: list[Member] = []
    for k, scope in scopes:
        base = f"s|{k}|{scope}|"
        out += [(base + "seq", seq), (base + "upd", upd), (base + "cre", cre)]
    return out


def memory_members(seq: int, row: MemoryRow) -> list[Member]:
    """All memories, a user's, an agent's and a team's, each by insertion, `updated_at` and
    `created_at` (AgentOS's memory page filters by any of them); and the memories of each
    topic, by insertion (a topics filter reads the union of its topics)."""
    user = f"u={row.user_id or ''}"
    # (by the times the memory's Agno dict shows, which Agno's sort compares: a `created_at`
    # the writer passed again is shown, though the row keeps the first one)
    upd, cre = tie_score(row.updated_at, seq), tie_score(epoch_of(row.fields.get("created_at"), row.created_at), seq)
    out: list[Member] = [("m|all|seq", seq), ("m|all|upd", upd), ("m|all|cre", cre),
                         (f"m|{user}|seq", seq), (f"m|{user}|upd", upd), (f"m|{user}|cre", cre)]
    for scope in (f"a={row.agent_id}" if isinstance(row.agent_id, str) else None,
                  f"tm={row.team_id}" if isinstance(row.team_id, str) else None):
        if scope is not None:
            out += [(f"m|{scope}|seq", seq), (f"m|{scope}|upd", upd), (f"m|{scope}|cre", cre)]
    out += [(f"m|t={topic}|seq", seq) for topic in dict.fromkeys(row.topics) if isinstance(topic, str)]
    return out


class Indexer:
    """Brings an index up to the log (see the module docstring). One per process and index;
    thread-safe. `catch_up` is cheap when nothing was appended: one look at the log's last
    position against the cursor this process last saw."""

    def __init__(self, store: EventStore, index: ReadIndex, *, commit_every: int = COMMIT_EVERY) -> None:
        self.store = store
        self.index = index
        self.commit_every = commit_every
        self._lock = lock_for(store)  # held across the log's and the index's I/O
        self._queue_lock = threading.Lock()  # never held across I/O
        self._folding = 0  # callers inside `_lock` (only its holder changes it)
        self._folded = Broadcast()  # bumped whenever a holder of `_lock` lets go
        self._queued: dict[int, dict[int, Event]] = {}  # partition -> position -> appended, not yet folded
        self._seen: dict[int, int] = {}
        # The index's purge mark as last read (None: not read yet); a new one means another
        # process's `forget_user` rebuilt the index (see `ReadIndex.cursors_and_purge`).
        self.purged: str | None = None
        self._sessions = SessionsProjection()
        self._memories = UserMemoriesProjection()
        self._workflows = WorkflowsProjection()
        self.ensure_schema()

    def ensure_schema(self) -> None:
        """A new index is claimed for this schema (one of several processes opening it at once
        wins; none empties what another has begun); an index of another schema is emptied
        and rebuilt, with a warning."""
        held = self.index.claim_schema(INDEX_SCHEMA)
        if held != str(INDEX_SCHEMA):
            log.warning("read index %s has schema %s, this code %d: rebuilding it from the log",
                        self.index.where, held, INDEX_SCHEMA)
            self.index.reset(INDEX_SCHEMA)
            self._seen = {}
            self._queued.clear()
        stale = self.index.stale_schemas()
        if stale:  # (kept for processes of the previous version; dropping it is the operator's call)
            log.warning("read index %s: the index of schema %s is still stored beside this one (schema %d); "
                        "once no process of the previous version runs, `eventlog reindex` drops it",
                        self.index.where, ", ".join(map(str, stale)), INDEX_SCHEMA)

    def reindex(self, progress: Any = None) -> int:
        """Fold the whole log again into a new index beside this one, then make it this one's
        content in one step (`ReadIndex.adopt`): processes reading meanwhile keep reading the
        old index, never a half-built one. Returns the events folded. (An index that cannot
        build beside itself is emptied and refolded in place.)"""
        shadow = self.index.shadow()
        if shadow is None:
            with self._folding_lock():
                self.index.reset(INDEX_SCHEMA)
                self._seen = {}
                self._queued.clear()
            return self.catch_up(progress=progress)
        try:
            builder = Indexer(self.store, shadow, commit_every=self.commit_every)
            folded = builder.catch_up(progress=progress)
            tail = [0]

            def finish() -> None:  # the events appended while the rebuild ran
                tail[0] += builder.catch_up(progress=progress)

            with self._folding_lock():
                self.index.adopt(shadow, finish)
                self._seen = self.index.cursors()
            return folded + tail[0]
        finally:
            shadow.discard()

    def purge(self, progress: Any = None) -> int:
        """After an erasure (`user.forgotten`): rebuild the index from the log — the erased
        user's fields now read as erased there — scrub what the rebuild freed, and mark the
        index purged. Returns the events folded."""
        folded = self.reindex(progress=progress)
        self.index.scrub()
        self.mark_purged()
        return folded

    def after_erasure(self) -> bool:
        """An erasure was just recorded (or found unpurged): fold it in — the index's meta
        then names it — and purge, unless another reader of this index already has; then
        read the purge mark. True if this call purged."""
        self.catch_up()
        if self.needs_purge():
            self.purge()
            return True
        self.purged = str(self.index.meta().get("purged", ""))
        return False

    def _note_erasures(self, folded: list[Event]) -> None:
        """An erasure (`user.forgotten`) just folded in is recorded in the index's meta, so
        that one whose purge did not finish (the process died between the event and the
        rebuild) is found by the next process that opens the log (`needs_purge`)."""
        for event in reversed(folded):
            if type(event.payload) is UserForgotten:
                self.index.set_meta("forgotten", event.id)
                return

    def needs_purge(self) -> bool:
        """Whether an erasure is in the index that no purge has followed (see `mark_purged`)."""
        meta = self.index.meta()
        return bool(meta.get("forgotten")) and meta.get("forgotten") != meta.get("purged_for")

    def mark_purged(self) -> None:
        """Record in the index that it was just rebuilt to purge an erased user's data (up to
        the last erasure it folded): each process's next catch-up that finds the log moved
        reads the new mark and drops what it cached from the index before (conversations,
        deserialized runs)."""
        self.purged = new_id()
        self.index.set_meta("purged_for", str(self.index.meta().get("forgotten", "")))
        self.index.set_meta("purged", self.purged)

    def stamp(self) -> tuple[tuple[int, int], ...]:
        """Where this process last saw the log end (equal stamps: nothing was appended in
        between, so nothing derived from the log can have changed)."""
        return tuple(sorted(self._seen.items()))

    def _log_end(self) -> dict[int, int]:
        target = self.store.last_position()
        self.index.note_log_end(target.offsets)
        return dict(target.offsets)

    def _behind(self, target: dict[int, int]) -> bool:
        return any(pos > self._seen.get(p, 0) for p, pos in target.items())

    def catch_up(self, progress: Any = None) -> int:
        """Fold whatever the log holds past the index's cursor; returns how many events.

        While another caller of this process is folding (the usual reason a reader finds the
        log ahead: writes of this process under way), the reader first waits for that fold to
        finish — all such readers are woken at once — and returns if it brought the index up
        to the log end the reader saw; only then does it queue for the lock itself."""
        target = self._log_end()
        if not self._behind(target):
            return 0
        for _ in range(4):  # (bounded: then it folds itself, whoever else is folding)
            generation = self._folded.generation
            if not self._folding:
                break
            self._folded.wait_past(generation, 1.0)
            if not self._behind(target):
                return 0
        with self._folding_lock():
            if not self._behind(target):  # folded while this caller waited for the lock
                return 0
            total = 0
            for _ in range(100):  # another process's reset (a reindex) restarts the read
                self._seen, self.purged = self.index.cursors_and_purge()
                done = self._fold_tail(progress)
                if done is not None:
                    return total + done
            raise RuntimeError(f"read index {self.index.where} kept moving under the indexer")

    def get_caught_up(self, kind: str, key: str, partition: int | None = None) -> bytes | None:
        """`catch_up()`, then the index's row of `kind` at `key`: in one round trip where the
        index reads the log's end with the row (`ReadIndex.get_at_log_end`, Redis) and was
        not behind it — a reader's first look, which on Redis is a third of a short
        session's `get_session`; else one after the other."""
        got = self.index.get_at_log_end(kind, key, partition)
        if got is not None:
            offsets, data = got
            self.index.note_log_end(offsets)
            if not self._behind(offsets):
                return data
        self.catch_up()
        return self.index.get(kind, key, partition)

    def fold_appended(self, events: list[Event]) -> None:
        """After this process's own append: fold the events it just wrote straight in when
        they follow the index's cursor (the usual case), else catch up from the log. Saves
        re-reading what was just written, once per write.

        Appends made at once in this process (threads, or coroutines on the native async
        path) are folded as a group: each queues its events before it waits for the lock, and
        whoever holds the lock folds every queued event that continues the cursor, in one
        index transaction. A writer whose events a predecessor folded returns as soon as it
        has the lock, without I/O. Without this, each write held the lock across its own
        commit's round trip and concurrent writers queued one commit each (on an event loop
        busy with other requests, the lock was saturated: most of AgentOS's p99 was that
        queue). The index's cursor is per partition and folds are in log order either way."""
        if not events:
            return
        p = events[0].partition
        last = events[-1].position
        grouped = all(e.partition == p for e in events) and last - events[0].position == len(events) - 1
        if grouped:
            with self._queue_lock:
                self._queued.setdefault(p, {}).update((e.position, e) for e in events)
        with self._folding_lock():
            if grouped:
                if self._seen.get(p, 0) >= last:  # a predecessor folded them with its own
                    return
                batch = self._take_queued(p)
                try:
                    if batch and self._commit(p, batch) and self._seen.get(p, 0) >= last:
                        return
                except Exception:
                    log.debug("folding an append directly failed; catching up from the log", exc_info=True)
        self.catch_up()

    @contextlib.contextmanager
    def _folding_lock(self) -> Iterator[None]:
        """`_lock`, counted in `_folding` while held, and a bump of `_folded` on letting go
        (what readers waiting on another's fold wait for)."""
        with self._lock:
            self._folding += 1
            try:
                yield
            finally:
                self._folding -= 1
        self._folded.bump()

    def _take_queued(self, p: int) -> list[Event]:
        """The queued events of partition `p` that continue its cursor without a gap, taken
        off the queue (with any the cursor has passed: someone folded them from the log)."""
        seen = self._seen.get(p, 0)
        with self._queue_lock:
            queued = self._queued.get(p, {})
            for position in [q for q in queued if q <= seen]:
                del queued[position]
            batch: list[Event] = []
            while (event := queued.pop(seen + len(batch) + 1, None)) is not None:
                batch.append(event)
        return batch

    def _fold_tail(self, progress: Any) -> int | None:
        """Read the log past the index's cursor and fold it in, `commit_every` events of a
        partition per transaction (so a long catch-up holds the index's lock in short turns
        and a crash keeps what was committed). None: the index was reset meanwhile."""
        pending: dict[int, list[Event]] = {}
        n = 0
        every = self.commit_every

        def flush(p: int, events: list[Event]) -> bool:
            nonlocal n
            if not self._commit(p, events):
                return False
            n += len(events)
            if progress is not None:
                progress(len(events))
            return True

        for batch in self.store.read_batches_for_fold(Cursor(dict(self._seen)), lazy_runs=True):
            for event in batch:
                pending.setdefault(event.partition, []).append(event)
            for p, events in pending.items():
                while len(events) >= every:
                    if not flush(p, events[:every]):
                        return None
                    del events[:every]
        for p, events in pending.items():
            if events and not flush(p, events):
                return None
        return n

    def _commit(self, partition: int, events: list[Event]) -> bool:
        """Fold `events` (one partition's, in order) into the index; False if the index's
        cursor is behind where they start (it was reset): the caller reads again."""
        for _ in range(50):
            txn = self.index.begin(partition)
            try:
                if txn.base < events[0].position - 1:
                    txn.rollback()
                    if not txn.trusted:
                        continue
                    return False
                todo = [e for e in events if e.position > txn.base]
                if not todo and not txn.trusted:  # ask the index itself before skipping them
                    txn.rollback()
                    continue
                if not todo:
                    txn.rollback()
                    self._seen[partition] = max(self._seen.get(partition, 0), txn.base)
                    return True
                self._fold(txn, todo)
                if txn.commit(todo[-1].position):
                    self._seen[partition] = todo[-1].position
                    self._note_erasures(todo)
                    return True
            except BaseException:
                txn.rollback()
                raise
        raise RuntimeError(f"read index {self.index.where}: partition {partition} kept conflicting")

    # --- the folds ------------------------------------------------------------------------

    def _fold(self, txn: IndexTxn, events: list[Event]) -> None:
        sessions: list[Event] = []
        runs: list[Event] = []
        memories: list[Event] = []
        workflows: list[Event] = []
        for event in events:
            t = type(event.payload)
            if t in _SESSION_TYPES or isinstance(event.payload, RunRecorded):
                sessions.append(event)
                if isinstance(event.payload, (RunRecorded, RunDeleted, SessionDeleted)):
                    runs.append(event)
            elif t in _MEMORY_TYPES:
                memories.append(event)
            elif t in _WORKFLOW_TYPES:
                workflows.append(event)
            elif t is RecordUpserted or t is RecordDeleted:
                self._record(txn, event)
        if sessions:
            self._fold_sessions(txn, sessions)
        if runs:  # (after the sessions: a run is placed by its session's insertion number)
            fold_runs(txn, runs, _session_seq)
        if memories:
            self._fold_memories(txn, memories)
        if workflows:
            self._fold_workflows(txn, workflows)

    def _fold_sessions(self, txn: IndexTxn, events: list[Event]) -> None:
        ids: set[str] = {e.payload.session_id for e in events}  # type: ignore[union-attr,misc]
        before: dict[str, tuple[int, bytes, list[Member]]] = {}
        names: dict[str, str] = {}  # the names searched before this fold (see `search_name`)
        heads: dict[str, bytes] = {}  # the heads before (see `HEAD_KIND`)
        state = SessionsState({})
        for sid in ids:
            data = txn.get("session", sid)
            if data is not None:
                seq, row = _session_dec.decode(data)
                before[sid] = (seq, data, session_members(seq, row))
                names[sid] = search_name(row)
                heads[sid] = head_bytes(data)
                state.sessions[sid] = row
        self._sessions.fold(events, state)
        for sid in ids:
            new = state.sessions.get(sid)
            old = before.get(sid)
            name = search_name(new) if new is not None else ""
            if name != names.get(sid, ""):
                was = trigram_members(names.get(sid, ""))
                if name:
                    txn.put(NAME_KIND, sid, name.encode(), was, trigram_members(name))
                else:
                    txn.delete(NAME_KIND, sid, was)
            if new is None:
                if old is not None:
                    txn.delete("session", sid, old[2])
                    txn.delete(HEAD_KIND, sid, ())
                    _move_values(txn, heads[sid], None)
                continue
            seq = old[0] if old is not None else txn.next_seq()
            data = _enc.encode((seq, new))
            if old is None or data != old[1]:
                txn.put("session", sid, data, old[2] if old is not None else (), session_members(seq, new))
                head = head_bytes(data)
                if head != heads.get(sid):
                    txn.put(HEAD_KIND, sid, head, (), ())
                    _move_values(txn, heads.get(sid), head)

    def _fold_memories(self, txn: IndexTxn, events: list[Event]) -> None:
        ids: dict[str, None] = {}
        for e in events:
            p: Any = e.payload
            if isinstance(p, UserMemoriesCleared):
                scope = "m|all|seq" if p.user_id is None else f"m|u={p.user_id}|seq"
                ids.update(dict.fromkeys(txn.keys(scope)))
            elif isinstance(p, UserForgotten):
                ids.update(dict.fromkeys(txn.keys(f"m|u={p.user_id}|seq")))
            else:
                ids[p.memory_id] = None
        before: dict[str, tuple[int, bytes, MemoryRow]] = {}
        for mid in ids:
            data = txn.get("memory", mid)
            if data is not None:
                seq, row = _memory_dec.decode(data)
                before[mid] = (seq, data, row)
        state = MemoriesState({}, {})
        for mid, (_, _, row) in sorted(before.items(), key=lambda kv: kv[1][0]):
            state.memories[mid] = msgspec.structs.replace(row)  # the fold may change rows in place
            state.by_user.setdefault(row.user_id or "", {})[mid] = None
        self._memories.fold(events, state)
        users: dict[str, list[tuple[MemoryRow | None, MemoryRow | None]]] = {}
        for mid in ids:
            new = state.memories.get(mid)
            old = before.get(mid)
            if old is not None:
                users.setdefault(old[2].user_id or "", []).append((old[2], None))
            text, was = memory_text(new) if new is not None else "", memory_text(old[2]) if old is not None else ""
            if text != was:  # (no row for an empty text: no needle a search tests is in it)
                if text:
                    txn.put(MEMORY_TEXT_KIND, mid, text.encode(), (), ())
                else:
                    txn.delete(MEMORY_TEXT_KIND, mid, ())
            if new is None:
                if old is not None:
                    txn.delete("memory", mid, memory_members(old[0], old[2]))
                    self._topics(txn, old[2].topics, -1)
                continue
            users.setdefault(new.user_id or "", []).append((None, new))
            seq = old[0] if old is not None else txn.next_seq()
            data = _enc.encode((seq, new))
            if old is None or data != old[1]:
                txn.put("memory", mid, data, memory_members(old[0], old[2]) if old is not None else (),
                        memory_members(seq, new))
                if old is None:
                    self._topics(txn, new.topics, +1)
                elif old[2].topics != new.topics:
                    self._topics(txn, old[2].topics, -1)
                    self._topics(txn, new.topics, +1)
        for user, changes in users.items():
            if user:  # (memories without a user are in no user's statistics)
                self._user_stats(txn, user, changes)

    @staticmethod
    def _topics(txn: IndexTxn, topics: Iterable[str], delta: int) -> None:
        for topic in set(topics):
            data = txn.get("topic", topic)
            n = (int(data) if data is not None else 0) + delta
            if n > 0:
                txn.put("topic", topic, str(n).encode(), (), ())
            elif data is not None:
                txn.delete("topic", topic, ())

    @staticmethod
    def _user_stats(txn: IndexTxn, user: str, changes: list[tuple[MemoryRow | None, MemoryRow | None]]) -> None:
        """A user's memory count and latest update (for `get_user_memory_stats`), ordered by
        the latest update (ties: in the order the users appeared, see `tie_score`). Kept up
        incrementally — a row that left takes one from the count, one that arrived adds one
        and may be the latest — and counted afresh from the user's ordering only when the row
        that was the latest changed or left."""
        old = txn.get("muser", user)
        count, last, seq = _muser_dec.decode(old) if old is not None else (0, 0, txn.next_seq())
        old_members: list[Member] = [("mu|last", tie_score(last, seq))] if old is not None else []
        recount = False
        for gone, came in changes:
            if gone is not None:
                count -= 1
                recount = recount or gone.updated_at >= last
            if came is not None:
                count += 1
                last = max(last, came.updated_at)
        if recount:
            keys = txn.keys(f"m|u={user}|upd")
            count = len(keys)
            last_row = txn.get("memory", keys[-1]) if keys else None
            last = decode_memory(last_row).updated_at if last_row is not None else 0
        if count <= 0:
            if old is not None:
                txn.delete("muser", user, old_members)
            return
        txn.put("muser", user, _enc.encode((count, last, seq)), old_members, [("mu|last", tie_score(last, seq))])

    def _fold_workflows(self, txn: IndexTxn, events: list[Event]) -> None:
        keys = {workflow_key(e.payload.workflow, e.payload.session_id) for e in events}  # type: ignore[union-attr]
        before: dict[str, tuple[int, bytes]] = {}
        state = WorkflowsState({})
        for key in keys:
            data = txn.get("wf", key)
            if data is not None:
                seq, row = _workflow_dec.decode(data)
                before[key] = (seq, data)
                state.workflows[key] = row
        self._workflows.fold(events, state)
        for key in keys:
            row = state.workflows[key]
            old = before.get(key)
            seq = old[0] if old is not None else txn.next_seq()
            data = _enc.encode((seq, row))
            if old is None or data != old[1]:
                txn.put("wf", key, data, [("wf|seq", old[0])] if old is not None else (), [("wf|seq", seq)])

    @staticmethod
    def _record(txn: IndexTxn, event: Event) -> None:
        """A record row by key, in its table's orderings (`projections.index.tables`): the
        members of the row as it was are replaced by those of the row as it is, so a write
        touches only its own row and the sorted-set entries that name it."""
        p: Any = event.payload
        kind = f"rec:{p.table}"
        old = txn.get(kind, p.key)
        before: tuple[int, dict[str, Any]] | None = _record_dec.decode(old) if old is not None else None
        old_members = record_members(p.table, *before) if before is not None else []
        if isinstance(p, RecordDeleted):
            if before is not None:
                txn.delete(kind, p.key, old_members)
                Indexer._statistics(txn, p.table, before[0], before[1], None)
            return
        seq = before[0] if before is not None else txn.next_seq()
        txn.put(kind, p.key, _enc.encode((seq, p.record)), old_members, record_members(p.table, seq, p.record))
        Indexer._statistics(txn, p.table, seq, before[1] if before is not None else None, p.record)

    @staticmethod
    def _statistics(txn: IndexTxn, table: str, seq: int, old: dict[str, Any] | None,
                    new: dict[str, Any] | None) -> None:
        """The aggregates a record write can change (after the row and its orderings)."""
        if old is not None and new is not None and old == new:
            return
        if table == "traces":
            Indexer._trace_stats(txn, seq, old, new)
        elif table == "spans":
            Indexer._span_stats(txn, old, new)
        elif table == "learnings":
            Indexer._learning_stats(txn, seq, old, new)

    @staticmethod
    def _span_stats(txn: IndexTxn, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Per (span name, kind), the statistics `get_span_stats` shows (`sstat`), listed in
        `ss|all`. A span that arrives is added in place; one that leaves is taken out in place
        unless it was the group's longest or latest, when the group is counted again from
        its name's scope."""
        was = span_group(old) if old is not None else None
        now = span_group(new) if new is not None else None
        for group in dict.fromkeys(g for g in (was, now) if g is not None):
            held = txn.get("sstat", group)
            stat: SpanStat | None = _sstat_dec.decode(held) if held is not None else None
            recount = False
            if was == group and old is not None:
                stat = span_stat_remove(stat, old) if stat is not None else None
                recount = stat is None
            if recount:
                ordering = scope_ordering("spans", "name", msgspec.json.decode(group)[0])
                keys = txn.keys(ordering) if ordering is not None else []
                rows = [decode_record(d) for d in (txn.get("rec:spans", k) for k in keys) if d is not None]
                stat = span_group_stats(rows, group)
            elif now == group and new is not None:
                stat = span_stat_add(stat, new)
            members: list[Member] = [("ss|all", 0.0)]
            if stat is None or stat[0] <= 0:
                if held is not None:
                    txn.delete("sstat", group, members)
                continue
            data = _enc.encode(stat)
            if data != held:
                txn.put("sstat", group, data, members if held is not None else [], members)

    @staticmethod
    def _learning_stats(txn: IndexTxn, seq: int, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Per user, over every learning type and over each type, the statistics
        `get_learnings_user_stats` shows (`lstat`, `lstat:<type>`): kept in place — a row that
        arrives may be the latest, one updated to a later time is — and counted again from the
        user's scope only when the row that left was their latest or first."""
        was = learning_groups(old) if old is not None else []
        now = learning_groups(new) if new is not None else []
        for user, kind in dict.fromkeys(was + now):
            row_kind = learning_stat_kind(kind)
            held = txn.get(row_kind, user)
            stat: LearningStat | None = _lstat_dec.decode(held) if held is not None else None
            recount = False
            added = (user, kind) in now and new is not None
            if (user, kind) in was and old is not None:
                before, after = old.get("updated_at"), new.get("updated_at") if new is not None else None
                if stat is None:
                    recount = True
                elif added and after is not None and (before is None or after >= before):
                    first, count, last = stat  # (updated in place to a later time)
                    stat = first, count, after if last is None else max(last, after)
                    added = False
                elif seq != stat[0] and (before is None or (stat[2] is not None and before < stat[2])):
                    stat = stat[0], stat[1] - 1, stat[2]
                else:
                    recount = True
            if recount:
                ordering = scope_ordering("learnings", "user_id", user)
                keys = txn.keys(ordering) if ordering is not None else []
                rows = [_record_dec.decode(d) for d in (txn.get("rec:learnings", k) for k in keys) if d is not None]
                stat = user_learning_stats(sorted(rows, key=lambda r: r[0]), user, kind)
            elif added and new is not None:
                stat = learning_stat_add(stat if stat is None or stat[1] > 0 else None, seq, new)
            old_members = learning_stat_members(user, _lstat_dec.decode(held), kind) if held is not None else []
            if stat is None or stat[1] <= 0:
                if held is not None:
                    txn.delete(row_kind, user, old_members)
                continue
            data = _enc.encode(stat)
            if data != held:
                txn.put(row_kind, user, data, old_members, learning_stat_members(user, stat, kind))

    @staticmethod
    def _trace_stats(txn: IndexTxn, seq: int, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Per session, JsonDb's trace statistics (`tstat`: session -> (first insertion number,
        entry)), ordered by the last trace's time (`ts|last`; `ts|odd` when a time cannot be
        ordered). Recounted from the session's traces only when a write changes what they are
        made of — a trace's session, owner ids or creation time — in a way the entry cannot
        follow by itself: a trace joining a session after its first is added in place, an owner
        id filled in on any trace but the first changes nothing shown."""
        for sid in trace_stats_affected(old, new):
            name = scope_ordering("traces", "session_id", sid)
            if name is None:
                continue
            text = str(scope_text(sid))
            held = txn.get("tstat", text)
            current = _tstat_dec.decode(held) if held is not None else None
            old_members = stat_members(current) if current is not None else []
            found = trace_stats_step(current, seq, old, new, sid)
            if found is False:
                continue  # (nothing the entry shows changed)
            if found is None:
                rows = [_record_dec.decode(d) for d in (txn.get("rec:traces", k) for k in txn.keys(name))
                        if d is not None]
                found = scope_trace_stats(sorted(rows, key=lambda r: r[0]))
            if found is None:
                if held is not None:
                    txn.delete("tstat", text, old_members)
                continue
            data = _enc.encode(found)
            if data != held:
                txn.put("tstat", text, data, old_members, stat_members(found))
