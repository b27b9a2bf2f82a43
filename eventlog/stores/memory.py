"""`MemoryStore`: the reference behaviour, for offline mode and tests.

It keeps each event's encoded bytes (not the object) so a caller mutating a payload dict it
got back can never change the log, exactly as with the durable stores.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

import msgspec

from eventlog import codec
from eventlog.events import Event
from eventlog.store import EMPTY_HEAD, Cursor, EventStore, StreamHead, resolve, seal_batch


class MemoryStore(EventStore):
    """Thread-safe in-process store. Everything is lost when the process ends."""

    def __init__(self, *, max_event_bytes: int = codec.DEFAULT_MAX_EVENT_BYTES) -> None:
        self.url = "memory://"
        self.max_event_bytes = max_event_bytes
        self._log: list[bytes] = []  # position p is _log[p - 1]
        self._streams_idx: dict[str, list[int]] = {}  # stream -> positions, by version
        self._heads: dict[str, StreamHead] = {}
        self._ids: dict[str, int] = {}  # event id -> position
        self._lock = threading.Lock()
        self._appended = threading.Condition(self._lock)

    def _decode_at(self, position: int, upcast: bool = True) -> Event:
        event = codec.decode(self._log[position - 1], upcast=upcast)
        return msgspec.structs.replace(event, position=position)

    def _stored(self, event_id: str) -> Event | None:
        position = self._ids.get(event_id)
        return None if position is None else self._decode_at(position)

    def _append(self, stream: str, events: list[Event], expected_version: int | None) -> list[Event]:
        with self._lock:
            head = self._heads.get(stream, EMPTY_HEAD)
            batch = seal_batch(stream, events, head, expected_version, self._stored, self.max_event_bytes)
            positioned: list[Event] = []
            index = self._streams_idx.setdefault(stream, [])
            for event, body in zip(batch.new, batch.bodies):
                position = len(self._log) + 1
                self._log.append(body)
                index.append(position)
                self._ids[event.id] = position
                positioned.append(msgspec.structs.replace(event, position=position))
            if batch.new:
                self._heads[stream] = batch.head
                self._appended.notify_all()
            if not index:
                del self._streams_idx[stream]
            return resolve(batch, positioned)

    def _read(self, stream: str, from_version: int, to_version: int | None) -> Iterator[Event]:
        with self._lock:
            positions = list(self._streams_idx.get(stream, ())[from_version - 1 : to_version])
        for position in positions:
            yield self._decode_at(position)

    def _read_all(self, after: Cursor, *, upcast: bool) -> Iterator[Event]:
        position = after.get(0)
        while True:
            with self._lock:
                chunk = self._log[position : position + 1024]
            if not chunk:
                return
            for data in chunk:
                position += 1
                yield msgspec.structs.replace(codec.decode(data, upcast=upcast), position=position)

    def _wait_for_append(self, cursor: Cursor, seconds: float, stop: threading.Event | None) -> None:
        with self._appended:
            if len(self._log) <= cursor.get(0):
                self._appended.wait(min(seconds, 0.2))

    def _streams(self) -> Iterable[str]:
        with self._lock:
            return list(self._streams_idx)

    def _head(self, stream: str) -> StreamHead:
        with self._lock:
            return self._heads.get(stream, EMPTY_HEAD)

    def last_position(self) -> Cursor:
        with self._lock:
            return Cursor({0: len(self._log)})

    def __len__(self) -> int:
        return len(self._log)
