"""Verifying the log: every event's hash, every stream's chain, every position, and the heads.

Each event's hash covers its canonical bytes including its predecessor's hash in the same
stream, and positions in a partition run 1, 2, 3, ... So editing a byte (hash), removing an
event (a version or position gap), reordering or inserting (chain or position order) are all
caught and located. Removing the *last* event of a stream leaves no gap; checkpoints close
that hole: a `log.checkpoint` event records every stream's head and a root hash over them, so
a later verify (or a copy checked against a root printed earlier) sees a head go missing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgspec

from eventlog import codec
from eventlog.events import ChainCheckpoint, Event, new_event
from eventlog.store import Cursor, EventStore

CHECKPOINT_STREAM = "log/checkpoints"


class Break(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The first place where the log does not match its own proofs."""

    kind: str  # edited | removed | reordered | inserted | unreadable | head-mismatch
    stream: str = ""
    version: int = 0
    id: str = ""
    position: int = 0
    partition: int = 0
    detail: str = ""

    def __str__(self) -> str:
        where = f"stream {self.stream!r} version {self.version} (event {self.id}, position {self.position})"
        return f"{self.kind}: {where}: {self.detail}" if self.stream else f"{self.kind}: {self.detail}"


class VerifyReport(msgspec.Struct, kw_only=True):
    ok: bool
    events: int
    streams: int
    root: str  # hash over every stream head at the end: compare with one printed earlier
    cursor: str
    first_break: Break | None = None
    checkpoints: int = 0
    resumed_from: str | None = None


def heads_root(heads: dict[str, str]) -> str:
    """One hash over all stream heads, independent of the order they were built in."""
    digest = hashlib.sha256()
    for stream in sorted(heads):
        digest.update(stream.encode())
        digest.update(b"\x00")
        digest.update(heads[stream].encode())
        digest.update(b"\n")
    return digest.hexdigest()


class _Walker:
    """The state of a verification walk: per-stream heads and per-partition positions."""

    def __init__(self, heads: dict[str, str] | None = None, cursor: Cursor | None = None) -> None:
        self.heads: dict[str, str] = dict(heads or {})
        self.cursor = cursor or Cursor()
        self.events = 0
        self.checkpoints = 0

    def check(self, event: Event) -> Break | None:
        here: dict[str, Any] = {"stream": event.stream, "version": event.version, "id": event.id,
                                "position": event.position, "partition": event.partition}
        expected_pos = self.cursor.get(event.partition) + 1
        if event.position != expected_pos:
            kind = "removed" if event.position > expected_pos else "reordered"
            return Break(kind=kind, detail=f"position {event.position} where {expected_pos} was due", **here)
        head = self.heads.get(event.stream, "0:")
        last_version, _, last_hash = head.partition(":")
        if event.version != int(last_version) + 1:
            kind = "removed" if event.version > int(last_version) + 1 else "reordered"
            return Break(kind=kind, detail=f"version {event.version} follows {last_version}", **here)
        if event.prev_hash != last_hash:
            return Break(kind="inserted", detail="prev_hash does not match the previous event's hash", **here)
        if codec.compute_hash(event) != event.hash:
            return Break(kind="edited", detail="content does not match its hash", **here)
        if isinstance(event.payload, ChainCheckpoint):
            self.checkpoints += 1
            lost = self._lost_since(event.payload)
            if lost:
                return Break(kind="removed", detail=f"stream {lost!r} is behind the head this checkpoint recorded",
                             **here)
        self.heads[event.stream] = f"{event.version}:{event.hash}"
        self.cursor = self.cursor.advanced(event)
        self.events += 1
        return None


    def _lost_since(self, checkpoint: ChainCheckpoint) -> str | None:
        """A stream whose head the checkpoint recorded but the log no longer reaches."""
        for stream, recorded in checkpoint.heads.items():
            version, _, digest = recorded.partition(":")
            now_version, _, now_digest = self.heads.get(stream, "0:").partition(":")
            if int(now_version) < int(version) or (int(now_version) == int(version) and now_digest != digest):
                return stream
        return None


def verify(store: EventStore, *, resume: bool = False, expect_root: str | None = None,
           progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Walk the log and report the first event that does not match.

    With `resume`, start from the newest checkpoint (trusting what it covers) instead of the
    beginning. With `expect_root`, also fail if the final heads differ from a root printed
    earlier (catches events removed from the end of streams)."""
    walker, first_break, resumed_from = _walk(store, resume, progress)
    root = heads_root(walker.heads)
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
    )


def _walk(store: EventStore, resume: bool,
          progress: Callable[[int], None] | None) -> tuple[_Walker, Break | None, str | None]:
    walker = _Walker()
    resumed_from = None
    if resume:
        last = None
        for event in store.read(CHECKPOINT_STREAM):
            last = event
        if last is not None and isinstance(last.payload, ChainCheckpoint):
            cp = last.payload
            walker = _Walker(cp.heads, Cursor.of(cp.up_to))
            resumed_from = cp.up_to
    first_break = _unreadable(store)
    if first_break is None:
        for event in store.read_all_raw(after=walker.cursor):
            first_break = walker.check(event)
            if first_break is not None:
                break
            if progress is not None and walker.events % 10_000 == 0:
                progress(walker.events)
    return walker, first_break, resumed_from


def _unreadable(store: EventStore) -> Break | None:
    """Lines the store could not even decode (file store) are a break of their own."""
    corrupt = getattr(store, "corrupt", None)
    if corrupt:
        segment, offset, why = corrupt[0]
        return Break(kind="unreadable", detail=f"segment {segment} byte {offset}: {why}")
    return None


def write_checkpoint(store: EventStore) -> Event:
    """Verify the log and append a checkpoint of every stream head (only if it verifies).

    The heads recorded are exactly those at the checkpoint's cursor, so a later `verify
    --resume` can start there; events appended meanwhile by others sit after that cursor."""
    walker, first_break, _ = _walk(store, True, None)
    if first_break is not None:
        raise ValueError(f"refusing to checkpoint a log that does not verify: {first_break}")
    heads = dict(walker.heads)
    payload = ChainCheckpoint(up_to=str(walker.cursor), events=walker.events, heads=heads,
                              root=heads_root(heads))
    return store.append(CHECKPOINT_STREAM, [new_event(payload)])[0]
