"""Verifying the log: every event's hash, every stream's chain, every position, and the heads.

Each event's hash covers its canonical bytes including its predecessor's hash in the same
stream, and positions in a partition run 1, 2, 3, ... So editing a byte (hash), removing an
event (a version or position gap), reordering or inserting (chain or position order) are all
caught and located.

Two things a per-stream chain alone cannot see, because positions are not hashed (the store
assigns them after sealing): an event removed from the *end* of a stream, and events of
*different* streams swapped (with their positions rewritten to match). The walk therefore also
keeps, per partition, an order digest: `d(p) = SHA-256(d(p-1) || hash of the event at p)`.
A checkpoint (`log.checkpoint`) records every stream head and every partition's order digest,
and a root hash over them; the final root of a walk covers the same. So a later verify sees a
stream that fell behind a checkpoint, or an order that differs from it, and a copy checked
against a root printed earlier (`expect_root`) sees any change at all.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import msgspec

from eventlog import codec
from eventlog.events import ChainCheckpoint, Event, new_event
from eventlog.positions import Cursor, StreamHead

CHECKPOINT_STREAM = "log/checkpoints"
# How many recent order digests a walk remembers per partition: a checkpoint's order is checked
# when its cursor is at most this far behind the checkpoint event itself (it is written right
# after a walk, so only appends racing with `write_checkpoint` come in between).
ORDER_WINDOW = 16_384
# How far past a position or version gap a walk looks to tell "reordered" from "removed".
LOOKAHEAD = 10_000


def order_key(partition: int) -> str:
    """The key of a partition's order digest among a checkpoint's heads. It has braces, which
    no stream name may contain, so it can never collide with a stream."""
    return f"{{order}}:{partition}"


def _partition_of_key(key: str) -> int | None:
    if not key.startswith("{order}:"):
        return None
    try:
        return int(key[len("{order}:"):])
    except ValueError:
        return None


class Break(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The first place where the log does not match its own proofs."""

    kind: str  # edited | removed | reordered | inserted | unreadable | head-mismatch | lost
    stream: str = ""
    version: int = 0
    id: str = ""
    position: int = 0
    partition: int = 0
    detail: str = ""

    def __str__(self) -> str:
        if not self.stream:
            return f"{self.kind}: {self.detail}"
        where = f"stream {self.stream!r} version {self.version}"
        if self.id:
            where += f" (event {self.id}, position {self.position})"
        return f"{self.kind}: {where}: {self.detail}"


class VerifyReport(msgspec.Struct, kw_only=True):
    ok: bool
    events: int
    streams: int
    root: str  # hash over every stream head and partition order at the end: compare later
    cursor: str
    first_break: Break | None = None
    checkpoints: int = 0
    resumed_from: str | None = None
    # What the store set aside before the walk (a torn last line, a batch cut short by a
    # crash: never acknowledged, moved to a `.torn-*` file): the log verifies without them.
    recovered: list[str] = []


class Log(Protocol):
    """What a walk needs of a store (every `EventStore` is one). A protocol, not the port
    itself, so the port can offer `verify()` without an import circle."""

    def head(self, stream: str) -> StreamHead: ...

    def read(self, stream: str, from_version: int = 1, to_version: int | None = None) -> Iterator[Event]: ...

    def read_all_raw(self, after: Cursor | int | str | None = None) -> Iterator[Event]: ...

    def append(self, stream: str, events: Iterable[Event], expected_version: int | None = None) -> list[Event]: ...


def lost_report(exc: Exception) -> VerifyReport:
    """The report of a walk that could not be made: the store has lost (part of) the log."""
    return VerifyReport(ok=False, events=0, streams=0, root="", cursor="",
                        first_break=Break(kind="lost", detail=str(exc)))


def heads_root(heads: dict[str, str]) -> str:
    """One hash over all stream heads (and order digests), independent of the order they
    were built in."""
    digest = hashlib.sha256()
    for stream in sorted(heads):
        digest.update(stream.encode())
        digest.update(b"\x00")
        digest.update(heads[stream].encode())
        digest.update(b"\n")
    return digest.hexdigest()


class _Walker:
    """The state of a verification walk: per-stream heads, per-partition positions and order
    digests (with a window of recent ones, to compare against checkpoints)."""

    def __init__(self, heads: dict[str, str] | None = None, cursor: Cursor | None = None) -> None:
        self.heads: dict[str, str] = {}
        self.order: dict[int, str] = {}
        self.recent: dict[int, deque[str]] = {}
        self.cursor = cursor or Cursor()
        for key, value in (heads or {}).items():
            partition = _partition_of_key(key)
            if partition is None:
                self.heads[key] = value
            else:
                self.order[partition] = value.partition(":")[2]
                self.recent[partition] = deque([self.order[partition]], maxlen=ORDER_WINDOW)
        self.events = 0
        self.checkpoints = 0
        # After a gap: tells whether an event is the one that was due (then it was reordered).
        self.due: Callable[[Event], bool] | None = None

    def proofs(self) -> dict[str, str]:
        """Stream heads and order digests: what a checkpoint records and the root covers."""
        heads = dict(self.heads)
        for partition, digest in self.order.items():
            heads[order_key(partition)] = f"{self.cursor.get(partition)}:{digest}"
        return heads

    def root(self) -> str:
        return heads_root(self.proofs())

    def check(self, event: Event) -> Break | None:
        here: dict[str, Any] = {"stream": event.stream, "version": event.version, "id": event.id,
                                "position": event.position, "partition": event.partition}
        self.due = None
        expected_pos = self.cursor.get(event.partition) + 1
        if event.position > expected_pos:
            p = event.partition
            self.due = lambda e: e.partition == p and e.position == expected_pos
            return Break(kind="removed", detail=f"position {expected_pos} is missing or unreadable "
                         f"(the next event found is at {event.position})", **here)
        head = self.heads.get(event.stream, "0:")
        last_version, _, last_hash = head.partition(":")
        if event.position < expected_pos:
            if event.version <= int(last_version):
                return Break(kind="inserted", detail=f"version {event.version} of this stream is already in the log "
                             f"(a copy or a forged twin, at position {event.position} where {expected_pos} was due)",
                             **here)
            return Break(kind="reordered", detail=f"position {event.position} where {expected_pos} was due", **here)
        if event.version != int(last_version) + 1:
            if event.version > int(last_version) + 1:
                stream, version = event.stream, int(last_version) + 1
                self.due = lambda e: e.stream == stream and e.version == version
                return Break(kind="removed", detail=f"version {version} is missing (found {event.version})", **here)
            return Break(kind="inserted", detail=f"version {event.version} of this stream is already in the log "
                         "(a copy or a forged twin)", **here)
        if event.prev_hash != last_hash:
            return Break(kind="inserted", detail="prev_hash does not match the previous event's hash", **here)
        if codec.compute_hash(event) != event.hash:
            return Break(kind="edited", detail="content does not match its hash", **here)
        if isinstance(event.payload, ChainCheckpoint):
            self.checkpoints += 1
            broken = self._against(event, event.payload)
            if broken is not None:
                return broken
        self.heads[event.stream] = f"{event.version}:{event.hash}"
        self.cursor = self.cursor.advanced(event)
        digest = hashlib.sha256(f"{self.order.get(event.partition, '')}{event.hash}".encode()).hexdigest()
        self.order[event.partition] = digest
        recent = self.recent.get(event.partition)
        if recent is None:
            recent = self.recent[event.partition] = deque([""], maxlen=ORDER_WINDOW)  # position 0
        recent.append(digest)
        self.events += 1
        return None

    def _against(self, event: Event, checkpoint: ChainCheckpoint) -> Break | None:
        """Where the log no longer matches what a checkpoint recorded about it."""
        at = f"the checkpoint at position {event.position} (event {event.id})"
        for key, recorded in checkpoint.heads.items():
            partition = _partition_of_key(key)
            if partition is not None:
                broken = self._order_against(partition, recorded, at)
                if broken is not None:
                    return broken
                continue
            version, _, digest = recorded.partition(":")
            now_version, _, now_digest = self.heads.get(key, "0:").partition(":")
            if int(now_version) < int(version):
                return Break(kind="removed", stream=key, version=int(now_version) + 1,
                             detail=f"{at} recorded this stream at version {version}; the log reaches only "
                                    f"version {now_version}")
            if int(now_version) == int(version) and now_digest != digest:
                return Break(kind="edited", stream=key, version=int(version),
                             detail=f"the event differs from the one {at} recorded")
        return None

    def _order_against(self, partition: int, recorded: str, at: str) -> Break | None:
        position_text, _, digest = recorded.partition(":")
        position = int(position_text)
        now = self.cursor.get(partition)
        if now < position:
            return Break(kind="removed", partition=partition, position=now + 1,
                         detail=f"{at} recorded partition {partition} up to position {position}; "
                                f"the log reaches only {now}")
        recent = self.recent.get(partition)
        back = now - position
        if position == 0 or recent is None or back >= len(recent):
            return None  # nothing recorded, or too far back to compare (see ORDER_WINDOW)
        if recent[len(recent) - 1 - back] != digest:
            return Break(kind="reordered", partition=partition, position=position,
                         detail=f"the events up to position {position} of partition {partition} are not "
                                f"the ones, in the order, {at} recorded")
        return None


def verify(store: Log, *, resume: bool = False, expect_root: str | None = None,
           progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Walk the log and report the first event that does not match.

    With `resume`, start from the newest checkpoint (trusting what it covers) instead of the
    beginning. With `expect_root`, also fail if the final heads and order differ from a root
    printed earlier (catches events removed from the end of streams, and any rewrite)."""
    walker, first_break, resumed_from = _walk(store, resume, progress)
    root = walker.root()
    if first_break is None and expect_root is not None and expect_root != root:
        first_break = Break(kind="head-mismatch", detail=f"root {root} differs from the expected {expect_root}")
    return VerifyReport(
        ok=first_break is None,
        events=walker.events,
        streams=len(walker.heads),
        root=root,
        cursor=str(walker.cursor),
        first_break=first_break,
        checkpoints=walker.checkpoints,
        resumed_from=resumed_from,
        recovered=list(getattr(store, "recovered", None) or ()),
    )


def _walk(store: Log, resume: bool,
          progress: Callable[[int], None] | None) -> tuple[_Walker, Break | None, str | None]:
    walker = _Walker()
    resumed_from = None
    if resume:
        head = store.head(CHECKPOINT_STREAM)
        last = None
        if head.version:
            last = next(store.read(CHECKPOINT_STREAM, head.version, head.version), None)
        if last is not None and isinstance(last.payload, ChainCheckpoint):
            cp = last.payload
            walker = _Walker(cp.heads, Cursor.of(cp.up_to))
            resumed_from = cp.up_to
    first_break = _unreadable(store)
    if first_break is None:
        events: Iterator[Event] = store.read_all_raw(after=walker.cursor)
        for event in events:
            first_break = walker.check(event)
            if first_break is not None:
                _classify(walker, first_break, events)
                break
            if progress is not None and walker.events % 10_000 == 0:
                progress(walker.events)
    return walker, first_break, resumed_from


def _classify(walker: _Walker, found: Break, rest: Iterator[Event]) -> None:
    """A gap whose missing event turns up a little later was a reorder, not a removal."""
    due = walker.due
    if due is None:
        return
    for n, event in enumerate(rest):
        if due(event):
            found.kind = "reordered"
            found.detail += f"; it appears {n + 1} event(s) later: the log is out of order"
            return
        if n >= LOOKAHEAD:
            return


def _unreadable(store: Log) -> Break | None:
    """Lines the store could not even decode (file store) are a break of their own."""
    corrupt = getattr(store, "corrupt", None)
    if corrupt:
        segment, offset, why = corrupt[0]
        return Break(kind="unreadable", detail=f"segment {segment} byte {offset}: {why}")
    return None


def write_checkpoint(store: Log) -> Event:
    """Verify the log and append a checkpoint of every stream head and partition order (only
    if it verifies).

    The proofs recorded are exactly those at the checkpoint's cursor, so a later `verify
    --resume` can start there; events appended meanwhile by others sit after that cursor."""
    walker, first_break, _ = _walk(store, True, None)
    if first_break is not None:
        raise ValueError(f"refusing to checkpoint a log that does not verify: {first_break}")
    heads = walker.proofs()
    payload = ChainCheckpoint(up_to=str(walker.cursor), events=walker.events, heads=heads,
                              root=heads_root(heads))
    return store.append(CHECKPOINT_STREAM, [new_event(payload)])[0]
