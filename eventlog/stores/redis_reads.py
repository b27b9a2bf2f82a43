"""Reading the Redis log: stream reads, partition pages, the merge over partitions, tail.

`RedisReads` is the read half of `RedisStreamStore` (`eventlog.stores.redis_store` holds the
connection, the keys and the append path); it only reads, through `_call`, which maps
redis-py's failures to the project's errors.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import msgspec

from eventlog import codec
from eventlog.errors import CorruptLog, LogLost, StoreUnavailable
from eventlog.events import Event
from eventlog.names import validate_stream
from eventlog.positions import Cursor, StreamHead
from eventlog.store import EventStore, batched
from eventlog.stores.redis_pages import _all_ours, _consume, _data_of, _positions, _repeat, _second

log = logging.getLogger("eventlog.redis")

T = TypeVar("T")

BATCH = 1000  # entries per XRANGE page


_IN_SCRIPT = 64  # a read of at most this many entries gets them in the script's reply (one round trip)


class RedisReads(EventStore):
    """The reads of `RedisStreamStore`; what they need of it is declared here."""

    client: Any
    cluster: bool
    _read_script: Any
    _page_script: Any
    _log_id: str | None
    _seen: dict[int, int]
    _config_checked: bool

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError

    def partition_of(self, stream: str) -> int:
        raise NotImplementedError

    def _keys(self, partition: int) -> tuple[str, str, str, str]:
        raise NotImplementedError

    def _stream_key(self, partition: int, stream: str) -> str:
        raise NotImplementedError

    def _fetch_head(self, partition: int, stream: str) -> StreamHead:
        raise NotImplementedError

    def _id_key(self, partition: int) -> str:
        raise NotImplementedError

    def _ensure_identity(self, create: bool = False) -> None:
        raise NotImplementedError

    def _saw(self, partition: int, position: int) -> None:
        raise NotImplementedError

    def _lost(self, what: str, log_id: str | None = None) -> LogLost:
        raise NotImplementedError

    def _reply_lost(self, reply: list[Any], partition: int, stream: str | None = None) -> LogLost:
        raise NotImplementedError

    def _decode(self, data: bytes, seq: int, partition: int, upcast: bool = True, lazy: bool = False) -> Event:
        event = codec.decode_for_fold(data) if lazy else codec.decode(data, upcast=upcast)
        return msgspec.structs.replace(event, position=seq, partition=partition)

    def _entries_of(self, log_key: str, seqs: list[int]) -> list[bytes]:
        """The stored JSON of the log entries `seqs` (ascending), b"" for one that is gone.

        Seqs close together (at most 7 other entries between: a session written turn by
        turn, or a few sessions interleaved) are read with one XRANGE of their span, and the
        spans of one read go in one pipeline: a long session costs one round trip and a few
        XRANGEs, not one command per event."""
        spans: list[tuple[int, int]] = []
        for seq in seqs:
            if spans and 0 < seq - spans[-1][1] <= 8:
                spans[-1] = (spans[-1][0], seq)
            else:
                spans.append((seq, seq))
        if not spans:
            return []
        if len(spans) == 1:
            pages = [self._call(self.client.xrange, log_key, f"0-{spans[0][0]}", f"0-{spans[0][1]}")]
        else:
            def pipelined() -> list[Any]:
                pipe = self.client.pipeline(transaction=False)
                for first, last in spans:
                    pipe.xrange(log_key, f"0-{first}", f"0-{last}")
                result: list[Any] = pipe.execute()
                return result
            pages = self._call(pipelined)
        datas: list[bytes] = []
        at = 0
        for (first, last), entries in zip(spans, pages):
            wanted = 1
            while at + wanted < len(seqs) and seqs[at + wanted] <= last:
                wanted += 1
            fields = list(map(_second, entries))
            if len(entries) == wanted == last - first + 1 and _all_ours(fields):
                datas += map(_second, fields)  # the whole span is the stream's: every entry, in order
            else:
                found = {int(entry_id.split(b"-")[1]): _data_of(f) for entry_id, f in entries}
                datas += (found.get(seq, b"") for seq in seqs[at:at + wanted])
            at += wanted
        return datas

    @staticmethod
    def _decode_page(seqs: list[int], datas: list[bytes], partition: int, lazy: bool) -> list[Event] | None:
        """A read's entries in one decoder call, each given its position and partition; None
        when one call cannot decode them exactly (then the caller decodes entry by entry and
        names the one that is not an event)."""
        events = codec.decode_entries(datas, lazy_runs=lazy)
        if events is None:
            return None
        place = msgspec.structs.force_setattr  # fresh structs of this call, not yet shared
        for event, seq in zip(events, seqs):
            place(event, "position", seq)
            place(event, "partition", partition)
        return events

    def read_for_fold(self, stream: str, from_version: int = 1) -> list[Event]:
        return list(self._read(validate_stream(stream), max(1, from_version), None, lazy=True))

    def _read(self, stream: str, from_version: int, to_version: int | None, lazy: bool = False) -> Iterator[Event]:
        p = self.partition_of(stream)
        log_key, seq_key, ids_key, heads_key = self._keys(p)
        keys = [log_key, self._stream_key(p, stream), heads_key, self._id_key(p), seq_key, ids_key]
        stop = -1 if to_version is None else to_version - 1
        if to_version is not None and to_version < from_version:
            return iter(())
        self._ensure_identity()
        if self._log_id is None:  # no log here yet, unless the stream's index outlived it (evicted)
            if not self._call(self.client.exists, keys[1]):
                return iter(())
            # Or another caller created the log since this one looked (its first append):
            # look again before calling it lost.
            self._config_checked = False
            self._ensure_identity()
            if self._log_id is None:
                raise self._lost(f"stream {stream!r} has an index but the log's config and keys are gone "
                                 "(evicted or deleted)")
        reply = self._call(lambda: self._read_script(keys=keys, args=[from_version - 1, stop, stream, self._log_id,
                                                                      self._seen.get(p, 0), _IN_SCRIPT]))
        if reply[0] in (b"LOST", b"EVICTED"):
            raise self._reply_lost(reply, p, stream)
        head = int(reply[0])
        last = head if to_version is None else min(head, to_version)
        seqs = [int(seq) for seq in reply[1]]
        datas = reply[2] if len(reply) > 2 else self._entries_of(log_key, seqs)
        missing = [from_version + i for i, data in enumerate(datas) if not data]
        events = [] if missing else self._decode_page(seqs, datas, p, lazy)
        if events is None:
            events = []
            for seq, data in zip(seqs, datas):
                try:
                    events.append(self._decode(data, seq, p, lazy=lazy))
                except CorruptLog as exc:
                    raise CorruptLog(f"{self.url}: stream {stream!r}, entry 0-{seq}: {exc}") from None
        version = from_version + len(seqs)
        # Never a stream with a gap as if it were whole: every version up to the head is due.
        missing.extend(range(version, last + 1))
        if missing:
            raise self._lost(f"stream {stream!r} has versions up to {head} but {_spans(missing)} are gone "
                             "(evicted or deleted)")
        if events:
            self._saw(p, events[-1].position)
        return iter(events)

    def _partition_entries(self, partition: int, after: int, upcast: bool, lazy_runs: bool = False) -> Iterator[Event]:
        for events in self._partition_batches(partition, after, upcast, lazy_runs):
            yield from events

    def _partition_batches(self, partition: int, after: int, upcast: bool,
                           lazy_runs: bool = False) -> Iterator[list[Event]]:
        """A partition's log after `after`, as decoded runs of up to 100 entries."""
        key, seq_key, ids_key, heads_key = self._keys(partition)
        start = after + 1
        set_field = msgspec.structs.force_setattr
        first = True
        while True:
            if first:  # with the checks of the log's identity, in the same round trip
                first = False
                self._ensure_identity()
                if self._log_id is None:
                    return  # no log here yet
                reply = self._call(self._page_script, [key, seq_key, self._id_key(partition), ids_key, heads_key],
                                   [f"0-{start}", BATCH, self._log_id, self._seen.get(partition, 0)])
                if reply[0] != b"OK":
                    raise self._reply_lost(reply, partition)
                entries = reply[1]
            else:
                entries = self._call(self.client.xrange, key, f"0-{start}", "+", BATCH)
            if not entries:
                return
            start = int(entries[-1][0].split(b"-")[1]) + 1
            # The common page: every entry is ours, [b"e", data] under id 0-<position>, as
            # Redis sends it (see _raw_reply): checked and taken apart by C-level passes, and
            # decoded in one call per run of 100 (a run's events are still in the CPU cache
            # when they are used). Anything else goes entry by entry.
            fields = list(map(_second, entries))
            positions = _positions(entries) if _all_ours(fields) else None
            if positions is None:
                yield list(self._decode_entries(entries, partition, upcast))
            else:
                for i in range(0, len(entries), 100):
                    page = fields[i:i + 100]
                    events = codec.decode_entries(list(map(_second, page)), upcast=upcast, lazy_runs=lazy_runs)
                    if events is None:  # an entry that is not exactly one current event
                        yield list(self._decode_entries(entries[i:i + 100], partition, upcast))
                        continue
                    # just decoded, referenced nowhere else: place each instead of copying it
                    _consume(map(set_field, events, _repeat("position"), positions[i:i + 100]))
                    if partition:
                        _consume(map(set_field, events, _repeat("partition"), _repeat(partition, len(events))))
                    yield events
            self._saw(partition, start - 1)
            if len(entries) < BATCH:
                return

    def _decode_entries(self, entries: list[Any], partition: int, upcast: bool) -> Iterator[Event]:
        """Entry by entry, skipping (and reporting) what is not an event of ours."""
        for entry_id, fields in entries:
            seq = int(entry_id.split(b"-")[1])
            try:
                # [b"e", data] as Redis sends it, or a dict from a client that parses replies
                # (a Redis Cluster client, a client passed in)
                if type(fields) is list and len(fields) == 2 and fields[0] == b"e":
                    data = fields[1]
                else:
                    data = (fields if type(fields) is dict else dict(zip(fields[::2], fields[1::2]))).get(b"e")
                    if data is None:
                        raise CorruptLog("entry has no 'e' field")
                yield msgspec.structs.replace(codec.decode(data, upcast=upcast), position=seq, partition=partition)
            except CorruptLog as exc:
                # Written by another client? Skip and report; verify() reports it as a gap.
                log.warning("%s: skipping unreadable entry %s of partition %d: %s", self.url,
                            entry_id.decode(), partition, exc)

    def _read_all(self, after: Cursor, *, upcast: bool, lazy_runs: bool = False) -> Iterator[Event]:
        if self.partitions == 1:
            yield from self._partition_entries(0, after.get(0), upcast, lazy_runs)
            return
        iterators = [
            ((e.id, e.partition, e.position, e) for e in self._partition_entries(p, after.get(p), upcast, lazy_runs))
            for p in range(self.partitions)
        ]
        for *_, event in heapq.merge(*iterators):
            yield event

    def read_batches_for_fold(self, after: Cursor | int | str | None = None, *,
                              lazy_runs: bool = False) -> Iterator[list[Event]]:
        cursor = Cursor.of(after)
        if self.partitions == 1:
            return self._partition_batches(0, cursor.get(0), True, lazy_runs)
        return batched(self._read_all(cursor, upcast=True, lazy_runs=lazy_runs))

    def _wait_for_append(self, cursor: Cursor, seconds: float, stop: threading.Event | None) -> None:
        if self.cluster or self.partitions > 1:
            super()._wait_for_append(cursor, seconds, stop)
            return
        block = max(1, int(min(seconds, 0.5) * 1000))
        key = self._keys(0)[0]
        try:
            self._call(lambda: self.client.xread({key: f"0-{cursor.get(0)}"}, count=1, block=block))
        except StoreUnavailable:
            super()._wait_for_append(cursor, seconds, stop)

    def _streams(self) -> Iterable[str]:
        names: list[str] = []
        for p in range(self.partitions):
            key = self._keys(p)[3]
            names.extend(k.decode() for k in self._call(lambda k=key: self.client.hkeys(k)))
        return names

    def _head(self, stream: str) -> StreamHead:
        return self._fetch_head(self.partition_of(stream), stream)

    def last_position(self) -> Cursor:
        if self.partitions == 1:
            key = self._keys(0)[1]
            return Cursor({0: int(self._call(lambda: self.client.get(key)) or 0)})
        return self.last_position_and(lambda pipe: None)[0]  # (every partition, one pipeline)

    def last_position_and(self, queue: Callable[[Any], None]) -> tuple[Cursor, list[Any]]:
        """`last_position` and the commands `queue` adds to the same pipeline, in one round
        trip: a reader's look at the log's end and its first read together. Each partition's
        position is read before the commands on its node, so a read of a partition's keys
        is at least as new as the position it comes with."""
        seqs = [self._keys(p)[1] for p in range(self.partitions)]

        def pipelined() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for key in seqs:
                pipe.get(key)
            queue(pipe)
            return pipe.execute()  # type: ignore[no-any-return]

        got = self._call(pipelined)
        return Cursor({p: int(got[p] or 0) for p in range(self.partitions)}), got[self.partitions:]


def _spans(versions: list[int]) -> str:
    """`[3, 4, 5, 9]` as "versions 3-5, 9" (for messages)."""
    parts: list[str] = []
    start = prev = versions[0]
    for v in [*versions[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(f"{start}-{prev}" if prev != start else str(start))
        if v is not None:
            start = prev = v
    return "versions " + ", ".join(parts[:10]) + (" ..." if len(parts) > 10 else "")
