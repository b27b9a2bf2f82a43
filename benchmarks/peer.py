"""The same events through the pyeventsourcing library's SQLite recorder vs our file store.

Both write N events in batches of 100 to 1,000 streams (aggregates) and read all of them back
in log order (eventsourcing: `select_notifications` pages; ours: `read_all`). Both store the
same JSON-encoded payload bytes; both fsync (SQLite's default synchronous mode on commit,
ours fsync=batch).
"""

from __future__ import annotations

from uuid import uuid4

from benchmarks._common import Result, Settings, fmt_rate, rate, tempdir, timed
from benchmarks.append_redis import make_events
from eventlog import codec
from eventlog.jsonl import JsonlStore


def run(settings: Settings) -> Result:
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

    n = 5000 if settings.quick else 100_000
    streams = max(1, n // 100)
    events = make_events(n)
    payloads = [codec.encode(e) for e in events]
    result = Result("peer", f"Peer event store: {n:,} events, pyeventsourcing (SQLite) vs our file store",
                    ["operation", "eventsourcing SQLite", "eventlog file", "ours / theirs", "target"])
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

        w_theirs = rate(n, timed(theirs_write))
        w_ours = rate(n, timed(ours_write))
        r_theirs = rate(n, timed(theirs_read))
        r_ours = rate(n, timed(lambda: sum(1 for _ in store.read_all())))
        store.close()
    result.rows.append(["append (batches of 100)", fmt_rate(w_theirs), fmt_rate(w_ours), f"{w_ours / w_theirs:.1f}x", ">= 3x"])
    result.rows.append(["read all back", fmt_rate(r_theirs), fmt_rate(r_ours), f"{r_ours / r_theirs:.1f}x", ">= 3x"])
    result.notes.append("ours also seals a SHA-256 chain per event and decodes into typed events on read; "
                        "theirs returns raw stored records")
    return result
