"""The one pipeline between an `Event` and its stored bytes: encode, seal (hash), decode, upcast.

Every store goes through this module, so the wire format, the hash chain and the handling of
unknown payload types are the same on memory, file and Redis.

Wire format: one JSON object per event (fields in `Event` order, defaults omitted). The hash of
an event is SHA-256 over its *canonical* encoding: the same object with `position`, `partition`
and `hash` left out (the store assigns the position after hashing) and `prev_hash` in. So the
hash covers the stream, version, id, time, actor and payload, and links to its predecessor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from eventlog.errors import CorruptLog, EventTooLarge, InvalidEvent
from eventlog.events import (
    NO_ACTOR,
    PAYLOAD_TYPES,
    Actor,
    Event,
    UnknownPayload,
)
from eventlog.json_check import find_unstorable
from eventlog.lazy_runs import LazyEvent, LazyRunRecorded

DEFAULT_MAX_EVENT_BYTES = 1 << 20  # 1 MiB, configurable per store


class _RawEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """`Event` with the payload left as raw JSON: the slow path for unknown/old payloads."""

    id: str
    stream: str = ""
    version: int = 0
    position: int = 0
    partition: int = 0
    at: datetime
    actor: Actor = NO_ACTOR
    causation_id: str | None = None
    correlation_id: str | None = None
    schema: int = 1
    payload: msgspec.Raw
    prev_hash: str = ""
    hash: str = ""


class _Tag(msgspec.Struct):
    type: str


_encoder = msgspec.json.Encoder()
_event_decoder = msgspec.json.Decoder(Event)
_raw_decoder = msgspec.json.Decoder(_RawEvent)
_lazy_decoder = msgspec.json.Decoder(LazyEvent)
_event_array_decoder = msgspec.json.Decoder(list[Event])
_lazy_array_decoder = msgspec.json.Decoder(list[LazyEvent])
_tag_decoder = msgspec.json.Decoder(_Tag)
_dict_decoder = msgspec.json.Decoder(dict[str, Any])

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_upcasters: dict[tuple[str, int], Upcaster] = {}


def register_upcaster(event_type: str, from_schema: int, fn: Upcaster) -> None:
    """Teach the decoder to read `event_type` payloads stored at `from_schema` as
    `from_schema + 1`. Chains run until the payload reaches the code's current schema."""
    _upcasters[(event_type, from_schema)] = fn


def _raw_to_event(raw: _RawEvent, payload: Any) -> Event:
    return Event(
        id=raw.id,
        stream=raw.stream,
        version=raw.version,
        position=raw.position,
        partition=raw.partition,
        at=raw.at,
        actor=raw.actor,
        causation_id=raw.causation_id,
        correlation_id=raw.correlation_id,
        schema=raw.schema,
        payload=payload,
        prev_hash=raw.prev_hash,
        hash=raw.hash,
    )


def encode(event: Event) -> bytes:
    """The stored form of an event (one JSON object, no newline)."""
    if isinstance(event.payload, UnknownPayload):
        raw = _RawEvent(
            id=event.id,
            stream=event.stream,
            version=event.version,
            position=event.position,
            partition=event.partition,
            at=event.at,
            actor=event.actor,
            causation_id=event.causation_id,
            correlation_id=event.correlation_id,
            schema=event.schema,
            payload=msgspec.Raw(event.payload.raw),
            prev_hash=event.prev_hash,
            hash=event.hash,
        )
        return _encoder.encode(raw)
    try:
        return _encoder.encode(event)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise _unencodable(event, exc) from None


def _unencodable(event: Event, exc: BaseException) -> InvalidEvent:
    """The error for an event the encoder refused, naming the bad field where it can: a dict
    key JSON cannot hold, a cycle or too deep a nesting (found by walking the payload only
    now, after the failure); else the encoder's words ("not JSON-encodable": a value of a
    type JSON has no form for)."""
    problem = find_unstorable(event.payload, "payload")
    if problem is not None:
        return InvalidEvent(f"event {event.id} ({event.type}) cannot be stored: {problem}")
    if isinstance(exc, RecursionError):
        return InvalidEvent(f"event {event.id} ({event.type}) cannot be stored: nested too deeply to encode")
    return InvalidEvent(f"event {event.id} ({event.type}) is not JSON-encodable: {exc}")


def canonical(event: Event) -> bytes:
    """The bytes the hash covers: the event without position, partition and hash."""
    return encode(msgspec.structs.replace(event, position=0, partition=0, hash=""))


def compute_hash(event: Event) -> str:
    return hashlib.sha256(canonical(event)).hexdigest()


def seal(event: Event, *, stream: str, version: int, prev_hash: str, max_bytes: int | None = None) -> Event:
    """Give an event its place in a stream and its chain hash (position comes later). The
    plain replace-then-encode path: the reference `seal_run`'s splicing is tested against."""
    return _seal_encoded_slow(event, stream=stream, version=version, prev_hash=prev_hash, max_bytes=max_bytes)[0]


def seal_encoded(event: Event, *, stream: str, version: int, prev_hash: str,
                 max_bytes: int | None = None) -> tuple[Event, bytes]:
    """`seal`, plus the stored form of the sealed event without a position (what Redis keeps),
    from one encode of the event (see `seal_run`)."""
    sealed, stored = seal_run([event], stream=stream, version=version - 1, prev_hash=prev_hash, position=None,
                              max_bytes=max_bytes)
    return sealed[0], stored[0]


def seal_run(events: list[Event], *, stream: str, version: int, prev_hash: str, position: int | None,
             max_bytes: int | None = None) -> tuple[list[Event], list[bytes]]:
    """Seal a run of events into one stream's chain, after `version` / `prev_hash`: the sealed
    events and their stored forms. With `position` (the position before the first event) the
    events and lines carry positions `position + 1, ...` (the file store's lines); with None
    they carry none (what Redis keeps, the position being its entry id).

    The hot path of every append, so it does not encode each event twice (replace, then
    encode): a fresh event encodes as `{"id":...,"at":...,...,"payload":{...}}` (the fields the
    store assigns sit at their defaults and are omitted). Field order being fixed, `stream` and
    `version` (and `position`) are spliced in right after `id`, `prev_hash` right before the
    closing brace, and `hash` after it — the bytes of encoding the placed event, which
    tests/test_codec.py checks for any payload, id and stream name. An event placed before
    (a re-append from another log) or an unknown payload kept raw takes the plain path."""
    stream_json = _encoder.encode(stream)
    encode_ = _encoder.encode
    sha256 = hashlib.sha256
    replace = msgspec.structs.replace
    sealed: list[Event] = []
    lines: list[bytes] = []
    for event in events:
        version += 1
        if (event.stream or event.version or event.position or event.partition or event.prev_hash or event.hash
                or type(event.payload) is UnknownPayload):
            placed, stored = _seal_encoded_slow(event, stream=stream, version=version, prev_hash=prev_hash,
                                                max_bytes=max_bytes)
            if position is not None:
                position += 1
                placed, stored = replace(placed, position=position), with_position(stored, position)
            sealed.append(placed)
            lines.append(stored)
            prev_hash = placed.hash
            continue
        try:
            raw = encode_(event)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise _unencodable(event, exc) from None
        id_end = 6 + len(encode_(event.id))
        head = b'%s,"stream":%s,"version":%d' % (raw[:id_end], stream_json, version)
        tail = b'%s,"prev_hash":%s' % (raw[id_end:-1], encode_(prev_hash)) if prev_hash else raw[id_end:-1]
        body = head + tail + b"}"
        if max_bytes is not None and len(body) > max_bytes:
            check_size(body, max_bytes, event)
        digest = sha256(body).hexdigest()
        if position is None:
            sealed.append(replace(event, stream=stream, version=version, prev_hash=prev_hash, hash=digest))
            lines.append(b'%s%s,"hash":"%s"}' % (head, tail, digest.encode()))
        else:
            position += 1
            sealed.append(replace(event, stream=stream, version=version, prev_hash=prev_hash, hash=digest,
                                  position=position))
            lines.append(b'%s,"position":%d%s,"hash":"%s"}' % (head, position, tail, digest.encode()))
        prev_hash = digest
    return sealed, lines


def _seal_encoded_slow(event: Event, *, stream: str, version: int, prev_hash: str,
                       max_bytes: int | None = None) -> tuple[Event, bytes]:
    """`seal_encoded` for any event (already placed ones included): replace, then encode."""
    placed = msgspec.structs.replace(
        event, stream=stream, version=version, prev_hash=prev_hash, position=0, partition=0, hash=""
    )
    body = encode(placed)
    if max_bytes is not None:
        check_size(body, max_bytes, placed)
    digest = hashlib.sha256(body).hexdigest()
    stored = body[:-1] + b',"hash":"' + digest.encode() + b'"}'
    return msgspec.structs.replace(placed, hash=digest), stored


def with_position(stored: bytes, position: int) -> bytes:
    """The stored form with `position` added (it goes right after `version`, field order being
    fixed): equal to encoding the event with that position, without encoding it again. Ids and
    stream names are JSON strings, where `,"version":` can only appear escaped."""
    at = stored.index(b',"version":') + 11
    comma = stored.index(b",", at)
    return b"%s,\"position\":%d%s" % (stored[:comma], position, stored[comma:])


def check_size(data: bytes, limit: int, event: Event) -> None:
    if len(data) > limit:
        raise EventTooLarge(
            f"event {event.id} ({event.type}) is {len(data)} bytes encoded; the limit is {limit} "
            "(raise max_event_bytes on the store, or store large blobs elsewhere and log a reference)"
        )


def decode(data: bytes | memoryview, *, upcast: bool = True) -> Event:
    """Decode one stored event. Unknown payload types come back as `UnknownPayload`; payloads
    stored at an older schema are upcast unless `upcast=False` (verification wants the bytes
    as stored)."""
    try:
        event = _event_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
        # The slow path decides: bad UTF-8 inside the payload (msgspec 0.23 reports it as a
        # DecodeError, older versions as a ValidationError) is kept as an `UnknownPayload`;
        # what is not an event at all raises `CorruptLog` there.
        return _decode_slow(data, upcast)
    if upcast and event.schema != type(event.payload).schema and not isinstance(
        event.payload, UnknownPayload
    ):
        return _decode_slow(data, upcast)
    return event


CorruptLine = Callable[[int, bytes, CorruptLog], None]
"""Told of a line of a run that is not an event: its byte offset in the run, its bytes, why."""


def decode_for_fold(data: bytes | memoryview) -> Event:
    """One stored event as a fold that takes lazy runs reads it (`decode_lines(lazy_runs=True)`
    for a single line): a `run.recorded` payload's run left as its stored JSON. Anything the
    lazy decoder would not give exactly — unknown types, old schemas, a run that is not an
    object, bytes that are not UTF-8 — is decoded the exact way."""
    try:
        lazy: LazyEvent = _lazy_decoder.decode(data)
        raw = bytes(data)
        if not raw.isascii():
            raw.decode()  # the UTF-8 check `Raw` skips
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
        return decode(data)
    if not _lazy_exact([lazy], True):
        return decode(data)
    return lazy  # type: ignore[return-value]  # an Event in all but the run's type


def decode_lines(data: bytes, *, upcast: bool = True, lazy_runs: bool = False,
                 on_corrupt: CorruptLine | None = None) -> list[Event]:
    """Decode a run of stored events, one per line.

    A line that is not an event is never dropped silently: without `on_corrupt` it raises
    `CorruptLog` naming its byte offset in the run; with it, the callback is told (the file
    store records and reports such lines, and `verify` shows them) and the line is left out.

    One decoder call for the whole run when every line is a current, known event (the
    common case: no per-line Python work); otherwise line by line through `decode`, so
    unknown types, old schemas and garbage are handled exactly as there.

    `lazy_runs`: the events come back as `LazyEvent`s (typed here as `Event`), whose
    `run.recorded` payloads are `LazyRunRecorded` (the run as its stored JSON) — only for a
    fold that declared it reads them (see `eventlog.lazy_runs`). What the typed decoder would
    refuse in a run and `Raw` does not check — a run that is not a JSON object, bytes that are
    not UTF-8 — sends the whole run of lines down the exact path. (Numbers beyond a float's
    range are not looked for: no writer of this codec produces them.)"""
    if lazy_runs:
        try:
            lazy: list[LazyEvent] = _lazy_decoder.decode_lines(data)
            if not data.isascii():
                data.decode()  # the UTF-8 check `Raw` skips (fast, and rarely needed at all)
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
            return _decode_each(data, upcast, on_corrupt)
        if not _lazy_exact(lazy, upcast):
            return _decode_each(data, upcast, on_corrupt)
        return lazy  # type: ignore[return-value]  # an Event in all but the run's type
    try:
        events = _event_decoder.decode_lines(data)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
        return _decode_each(data, upcast, on_corrupt)
    if upcast:
        for event in events:
            if event.schema != event.payload.schema:
                return _decode_each(data, upcast, on_corrupt)
    return events


def decode_entries(datas: list[bytes], *, upcast: bool = True, lazy_runs: bool = False) -> list[Event] | None:
    """Decode stored events kept one per entry (a Redis stream page) in one decoder call, or
    None when that cannot give exactly one current, known event per entry — then the caller
    decodes entry by entry with `decode`.

    The entries are decoded as the items of one JSON array: an entry that is empty, is not
    JSON, or holds two values side by side breaks the array's syntax, and one holding two
    values separated by a comma adds an item, which the count catches. (Joined as lines
    instead, a blank entry and one with two events on one line cancel out, and every later
    event of the page would take its neighbour's place.) `lazy_runs` as in `decode_lines`."""
    if not datas:
        return []
    # One copy of the entries: the brackets go onto the first and last (a 2 MB session
    # joined and then bracketed was copied twice).
    blob = b",".join([b"[" + datas[0], *datas[1:-1], datas[-1] + b"]"] if len(datas) > 1 else [b"[" + datas[0] + b"]"])
    try:
        if lazy_runs:
            lazy: list[LazyEvent] = _lazy_array_decoder.decode(blob)
            if not blob.isascii():
                blob.decode()  # the UTF-8 check `Raw` skips
        else:
            events: list[Event] = _event_array_decoder.decode(blob)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
        return None
    if lazy_runs:
        if len(lazy) != len(datas) or not _lazy_exact(lazy, upcast):
            return None
        return lazy  # type: ignore[return-value]  # an Event in all but the run's type
    if len(events) != len(datas):
        return None
    if upcast:
        for event in events:
            if event.schema != event.payload.schema:
                return None
    return events


def _lazy_exact(lazy: list[LazyEvent], upcast: bool) -> bool:
    """Whether lazily decoded events are what the exact path gives (but for the runs' type):
    no payload to upcast, every run a JSON object."""
    for e in lazy:
        p = e.payload
        if (upcast and e.schema != p.schema) or (type(p) is LazyRunRecorded and memoryview(p.run)[0] != 123):
            return False  # 123: "{"
    return True


def _decode_each(data: bytes, upcast: bool, on_corrupt: CorruptLine | None) -> list[Event]:
    """Line by line through `decode`; a line that is not an event goes to `on_corrupt` (or
    raises, naming its offset) — never silently away."""
    events = []
    offset = 0
    for line in data.split(b"\n"):
        start, offset = offset, offset + len(line) + 1
        if not line.strip():
            continue
        try:
            events.append(decode(line, upcast=upcast))
        except CorruptLog as exc:
            if on_corrupt is None:
                raise CorruptLog(f"line at byte {start} of the run is not an event: {exc}") from exc
            on_corrupt(start, line, exc)
    return events


def _decode_slow(data: bytes | memoryview, upcast: bool) -> Event:
    try:
        raw = _raw_decoder.decode(data)
        tag = _tag_decoder.decode(raw.payload).type
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise CorruptLog(f"malformed event: {exc}") from exc
    cls = PAYLOAD_TYPES.get(tag)
    if cls is None or cls is UnknownPayload:
        return _raw_to_event(raw, UnknownPayload(kind=tag, raw=bytes(raw.payload)))
    if upcast and raw.schema < cls.schema:
        body = _dict_decoder.decode(raw.payload)
        schema = raw.schema
        while schema < cls.schema:
            fn = _upcasters.get((tag, schema))
            if fn is None:
                raise CorruptLog(f"no upcaster for {tag} schema {schema} -> {schema + 1}")
            body = fn(body)
            schema += 1
        body["type"] = tag
        try:
            payload = msgspec.convert(body, cls)
        except msgspec.ValidationError as exc:
            raise CorruptLog(f"event {raw.id}: upcast {tag} payload is invalid: {exc}") from exc
        return msgspec.structs.replace(_raw_to_event(raw, payload), schema=cls.schema)
    # A known tag whose body does not fit the type (or a newer schema): keep it intact.
    return _raw_to_event(raw, UnknownPayload(kind=tag, raw=bytes(raw.payload)))


def to_builtins(event: Event) -> dict[str, Any]:
    """A plain dict of the event (for JSON output); unknown payloads as their decoded JSON."""
    result: dict[str, Any] = msgspec.json.decode(encode(event))
    return result
