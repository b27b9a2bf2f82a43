"""The same events through the pyeventsourcing library's SQLite recorder vs our file store.

Both write N events in batches of 100 to 1,000 streams (aggregates) and read all of them back
in log order (eventsourcing: `select_notifications` pages; ours: `read_all`). Both store the
same JSON-encoded payload bytes; both fsync once per batch of 100 (SQLite in WAL mode with its
default synchronous=FULL syncs the WAL on each commit; ours fsync=batch syncs every 100 events).

The last column is the raw limit on this machine for the same bytes: one `write` of each batch's
lines plus one `fdatasync` per batch, and reading the files back with typed msgspec decoding.
A target above `raw / theirs` cannot be met by any store that makes each batch durable.
"""

from __future__ import annotations

import os
from pathlib import Path
from uuid import uuid4

import msgspec

from benchmarks._common import Result, Settings, fmt_rate, rate, tempdir, timed
from benchmarks.append_redis import make_events
from eventlog import Event, codec
from eventlog.jsonl import JsonlStore


def _raw_write(path: Path, lines: list[bytes]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for s in range(0, len(lines), 100):
            os.write(fd, b"".join(lines[s:s + 100]))
            os.fdatasync(fd)
    finally:
        os.close(fd)


def _sealed_write(path: Path, events: list[Event]) -> None:
    """The raw write plus the one thing a hash-chained log cannot skip: sealing each event
    (encode + SHA-256 over it and its predecessor's hash), with the store's own function."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for s in range(0, len(events), 100):
            stream = f"session/p{s // 100}"
            _, lines = codec.seal_run(events[s:s + 100], stream=stream, version=0, prev_hash="", position=s)
            os.write(fd, b"\n".join(lines) + b"\n")
            os.fdatasync(fd)
    finally:
        os.close(fd)


def _raw_read(path: Path) -> int:
    decoder = msgspec.json.Decoder(Event)
    n = 0
    with open(path, "rb") as f:
        for line in f:
            decoder.decode(line)
            n += 1
    return n


def run(settings: Settings) -> Result:
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

    n = 5000 if settings.quick else 100_000
    streams = max(1, n // 100)
    events = make_events(n)
    payloads = [codec.encode(e) for e in events]
    result = Result("peer", f"Peer event store: {n:,} events, pyeventsourcing (SQLite) vs our file store",
                    ["operation", "eventsourcing SQLite", "eventlog file", "ours / theirs", "raw limit (raw / theirs)",
                     "raw + seal (/ theirs)", "target"])
    with tempdir() as d:
        datastore = SQLiteDatastore(str(d / "es.sqlite"), originator_id_type="text")
        recorder = SQLiteApplicationRecorder(datastore)
        recorder.create_table()
        ids = [str(uuid4()) for _ in range(streams)]

        def theirs_write() -> None:
            for s in range(streams):
                chunk = payloads[s * 100:(s + 1) * 100]
                recorder.insert_events([StoredEvent(originator_id=ids[s], originator_version=v + 1,
                                                    topic="eventlog:MessageAppended", state=p)
                                        for v, p in enumerate(chunk)])

        def theirs_read() -> int:
            got, start = 0, 1
            while True:
                page = recorder.select_notifications(start=start, limit=1000)
                got += len(page)
                if len(page) < 1000:
                    return got
                start = page[-1].id + 1

        store = JsonlStore(d / "ours", fsync="batch")

        def ours_write() -> None:
            for s in range(streams):
                store.append(f"session/p{s}", events[s * 100:(s + 1) * 100])
            store.flush()

        lines = [codec.encode(codec.seal(e, stream="session/p", version=i + 1, prev_hash="")) + b"\n"
                 for i, e in enumerate(events)]
        w_raw = rate(n, timed(lambda: _raw_write(d / "raw.jsonl", lines)))
        r_raw = rate(n, timed(lambda: _raw_read(d / "raw.jsonl")))
        w_floor = rate(n, timed(lambda: _sealed_write(d / "sealed.jsonl", events)))
        w_theirs = rate(n, timed(theirs_write))
        w_ours = rate(n, timed(ours_write))
        r_theirs = rate(n, timed(theirs_read))
        r_ours = rate(n, timed(lambda: sum(1 for _ in store.read_all())))
        store.close()
    result.rows.append(["append (batches of 100)", fmt_rate(w_theirs), fmt_rate(w_ours), f"{w_ours / w_theirs:.1f}x",
                        f"{fmt_rate(w_raw)} ({w_raw / w_theirs:.1f}x)", f"{fmt_rate(w_floor)} ({w_floor / w_theirs:.1f}x)",
                        ">= 3x"])
    result.rows.append(["read all back", fmt_rate(r_theirs), fmt_rate(r_ours), f"{r_ours / r_theirs:.1f}x",
                        f"{fmt_rate(r_raw)} ({r_raw / r_theirs:.1f}x)", "-", ">= 3x"])
    result.notes.append("raw: the same bytes written with one write + fdatasync per batch, read back with typed "
                        "msgspec decoding; raw + seal: the raw write plus sealing each event into its chain "
                        "(codec.seal_run), the floor for any hash-chained log")
    result.notes.append("ours also seals a SHA-256 chain per event and decodes into typed events on read; "
                        "theirs returns raw stored records")
    return result
