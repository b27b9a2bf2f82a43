"""The `EventStore` port: what every backend promises, and the checks they all share.

The public methods live here and validate their input once; a backend implements the
underscored primitives. That keeps each backend module about its storage and nothing else,
and means a stream name or an oversized event is rejected the same way everywhere.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import NamedTuple

from eventlog import codec
from eventlog.errors import ConcurrencyError, InvalidEvent
from eventlog.events import Event
from eventlog.integrity import VerifyReport, verify
from eventlog.names import validate_stream
from eventlog.positions import EMPTY_HEAD, Cursor, StreamHead, Until

__all__ = ["EMPTY_HEAD", "FOLD_BATCH", "Cursor", "EventStore", "SealedBatch", "StreamHead", "Until", "batched",
           "resolve", "seal_batch"]




# Events per batch of `read_batches_for_fold` (the stores that decode in runs use theirs).
FOLD_BATCH = 256


def batched(events: Iterable[Event], size: int = FOLD_BATCH) -> Iterator[list[Event]]:
    """`events` in lists of `size` (the last one shorter)."""
    batch: list[Event] = []
    for event in events:
        batch.append(event)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class EventStore(ABC):
    """An append-only log of streams of events.

    Guarantees every backend keeps (the conformance suite checks them all):
    - `append` is atomic per call: all new events are stored, or none are.
    - versions in a stream are 1, 2, 3, ... with no gaps; positions grow in append order.
    - appending an event whose id is stored already stores nothing and returns the stored one.
    - `expected_version` that does not match raises `ConcurrencyError` and writes nothing.
    - events read back equal the events returned by `append`.
    """

    max_event_bytes: int = codec.DEFAULT_MAX_EVENT_BYTES
    partitions: int = 1
    url: str = ""

    # --- writing --------------------------------------------------------------------------

    def append(
        self, stream: str, events: Iterable[Event], expected_version: int | None = None
    ) -> list[Event]:
        """Append `events` to `stream`; returns them as recorded (version, position, hash)."""
        stream = validate_stream(stream)
        batch = _dedupe_batch(stream, events)
        if expected_version is not None and (
            isinstance(expected_version, bool) or not isinstance(expected_version, int) or expected_version < 0
        ):
            raise InvalidEvent(f"expected_version must be an int >= 0, got {expected_version!r}")
        if not batch:
            return []
        return self._append(stream, batch, expected_version)

    @abstractmethod
    def _append(self, stream: str, events: list[Event], expected_version: int | None) -> list[Event]:
        """Store a validated, de-duplicated, non-empty batch atomically."""

    # --- reading --------------------------------------------------------------------------

    def read(self, stream: str, from_version: int = 1, to_version: int | None = None) -> Iterator[Event]:
        """Events of one stream with `from_version <= version <= to_version`, in order."""
        stream = validate_stream(stream)
        return self._read(stream, max(1, from_version), to_version)

    @abstractmethod
    def _read(self, stream: str, from_version: int, to_version: int | None) -> Iterator[Event]: ...

    def read_for_fold(self, stream: str, from_version: int = 1) -> list[Event]:
        """`read(stream, from_version)` for a fold whose projections take lazy runs (see
        `eventlog.lazy_runs`): stores that can hand a run over as its stored JSON do, so a
        long session is not parsed into dicts only to be encoded back. Others read exactly."""
        return list(self.read(stream, from_version))

    def read_all(self, after: Cursor | int | str | None = None, until: Until = None) -> Iterator[Event]:
        """Every event after `after`, in log order, streamed (never the whole log in memory).

        `until` stops at a position/cursor (inclusive) or keeps only events at or before a
        UTC time (`datetime`)."""
        cursor = Cursor.of(after)
        if until is None:
            return self._read_all(cursor, upcast=True)
        if isinstance(until, datetime):
            limit_time = until
            return (e for e in self._read_all(cursor, upcast=True) if e.at <= limit_time)
        stop = Cursor.of(until)
        return self._read_all_until(cursor, stop)

    def _read_all_until(self, cursor: Cursor, stop: Cursor) -> Iterator[Event]:
        # One partition read in order: the first event past `stop` ends it. (A fallback
        # store's pending events come after, under a partition of their own: a stop naming
        # two partitions reads on.)
        single = self.partitions == 1 and len(stop.offsets) <= 1
        for event in self._read_all(cursor, upcast=True):
            if stop.covers(event):
                yield event
            elif single:
                return

    @abstractmethod
    def _read_all(self, after: Cursor, *, upcast: bool) -> Iterator[Event]: ...

    def read_batches_for_fold(self, after: Cursor | int | str | None = None, *,
                              lazy_runs: bool = False) -> Iterator[list[Event]]:
        """`read_all` in lists, for a fold (a rebuild): the order and events of `read_all`,
        handed over in batches of a few hundred so the caller's per-event work can be one
        loop. A store that decodes stored bytes yields the runs it decodes at once.

        `lazy_runs`: a store that decodes stored bytes may return `eventlog.lazy_runs.LazyEvent`s
        (every `run.recorded` run left as its stored JSON), for a fold that reads runs only as
        JSON; see there. A store that keeps decoded events gives plain ones."""
        return batched(self.read_all(after))

    def read_all_raw(self, after: Cursor | int | str | None = None) -> Iterator[Event]:
        """Like `read_all` but payloads exactly as stored (no upcasting): for verification."""
        return self._read_all(Cursor.of(after), upcast=False)

    def tail(
        self,
        after: Cursor | int | str | None = None,
        *,
        prefix: str = "",
        types: Sequence[str] | None = None,
        stop: threading.Event | None = None,
        timeout: float | None = None,
    ) -> Iterator[Event]:
        """Catch up from `after`, then keep yielding new events as they are appended.

        Ends when `stop` is set or, if given, after `timeout` seconds with nothing new."""
        cursor = Cursor.of(after)
        wanted = set(types) if types else None
        idle_since = time.monotonic()
        while stop is None or not stop.is_set():
            got = False
            for event in self._read_all(cursor, upcast=True):
                cursor = cursor.advanced(event)
                got = True
                if event.stream.startswith(prefix) and (wanted is None or event.type in wanted):
                    yield event
                if stop is not None and stop.is_set():
                    return
            now = time.monotonic()
            if got:
                idle_since = now
            elif timeout is not None and now - idle_since >= timeout:
                return
            wait = 0.5 if timeout is None else max(0.0, min(0.5, timeout - (now - idle_since)))
            self._wait_for_append(cursor, wait, stop)

    def _wait_for_append(self, cursor: Cursor, seconds: float, stop: threading.Event | None) -> None:
        """Block until something may have been appended after `cursor` (or `seconds` pass)."""
        if stop is not None:
            stop.wait(min(seconds, 0.05))
        else:
            time.sleep(min(seconds, 0.05))

    def streams(self, prefix: str = "") -> list[str]:
        """Names of the streams that hold at least one event, sorted, starting with `prefix`."""
        return sorted(s for s in self._streams() if s.startswith(prefix))

    @abstractmethod
    def _streams(self) -> Iterable[str]: ...

    def head(self, stream: str) -> StreamHead:
        validate_stream(stream)
        return self._head(stream)

    @abstractmethod
    def _head(self, stream: str) -> StreamHead: ...

    def last_position(self) -> Cursor:
        """The cursor just after the newest event (what `tail` would start from to see only
        new events)."""
        cursor = Cursor()
        for event in self._read_all(cursor, upcast=False):
            cursor = cursor.advanced(event)
        return cursor

    def verify(self, *, resume: bool = False, expect_root: str | None = None,
               progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Check every hash, chain link and position; see `eventlog.integrity`."""
        return verify(self, resume=resume, expect_root=expect_root, progress=progress)

    # --- small side data (projection snapshots) -------------------------------------------

    def put_blob(self, name: str, data: bytes) -> None:
        """Keep a small named blob beside the log (projection snapshots). Not part of the
        log: not hashed, not replayed, and safe to lose (it is rebuilt from the log)."""
        validate_stream(name)
        self._blobs()[name] = bytes(data)

    def get_blob(self, name: str) -> bytes | None:
        validate_stream(name)
        return self._blobs().get(name)

    def _blobs(self) -> dict[str, bytes]:
        blobs: dict[str, bytes] | None = getattr(self, "_blob_dict", None)
        if blobs is None:
            blobs = {}
            self._blob_dict = blobs
        return blobs

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files, locks and connections. Idempotent."""

    def __enter__(self) -> EventStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def _dedupe_batch(stream: str, events: Iterable[Event]) -> list[Event]:
    """The batch checked (Event objects, for this stream, with usable ids), repeats dropped."""
    if type(events) is list and len(events) == 1:  # the common append: nothing to dedupe
        _check_event(stream, events[0])
        return [events[0]]
    batch: list[Event] = []
    seen: set[str] = set()
    for event in events:
        _check_event(stream, event)
        if event.id in seen:
            continue
        seen.add(event.id)
        batch.append(event)
    return batch


def _check_event(stream: str, event: Event) -> None:
    if not isinstance(event, Event):
        raise InvalidEvent(f"append takes Event objects, got {type(event).__name__}")
    if event.stream and event.stream != stream:
        raise InvalidEvent(f"event {event.id} names stream {event.stream!r}, appended to {stream!r}")
    if not isinstance(event.id, str) or not event.id or len(event.id) > 128:
        raise InvalidEvent("event id must be a non-empty string of at most 128 characters")


class SealedBatch(NamedTuple):
    """A batch ready to store: the new events sealed into the chain, the stored twins of
    duplicates, and where each result comes from (index into `new` or a stored event)."""

    new: list[Event]
    results: list[Event | int]
    head: StreamHead
    bodies: list[bytes]  # stored form of each new event, without a position


def seal_batch(
    stream: str,
    events: list[Event],
    head: StreamHead,
    expected_version: int | None,
    stored: Callable[[str], Event | None],
    max_event_bytes: int,
) -> SealedBatch:
    """The shared core of an append for stores that hold a lock while appending.

    Duplicates (ids already stored) are returned as stored; if every event is a duplicate the
    call succeeds whatever `expected_version` says (it is a retry of a write that landed).
    """
    results: list[Event | int] = []
    fresh: list[Event] = []
    for event in events:
        existing = stored(event.id)
        if existing is not None:
            results.append(existing)
        else:
            results.append(len(fresh))
            fresh.append(event)
    if fresh and expected_version is not None and expected_version != head.version:
        raise ConcurrencyError(stream, expected_version, head.version)
    sealed, bodies = codec.seal_run(fresh, stream=stream, version=head.version, prev_hash=head.hash, position=None,
                                    max_bytes=max_event_bytes)
    new_head = StreamHead(head.version + len(sealed), sealed[-1].hash) if sealed else head
    return SealedBatch(sealed, results, new_head, bodies)


def resolve(batch: SealedBatch, positioned: Sequence[Event]) -> list[Event]:
    """The results of an append in call order, given the new events with their positions."""
    return [positioned[r] if isinstance(r, int) else r for r in batch.results]
