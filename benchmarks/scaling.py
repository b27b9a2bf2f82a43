"""Cost as the file log grows: append, per-stream read and cold open at each size.

Flat rows mean cost does not depend on how long the log is: appends touch the end of the
active segment, a stream read uses the index, and a cold open loads the saved index and scans
only what was appended after it.
"""

from __future__ import annotations

from benchmarks._common import Result, Settings, fmt_ms, tempdir, timed
from benchmarks.append_redis import make_events
from benchmarks.replay import populate
from eventlog import open_store
from eventlog.jsonl import JsonlStore


def run(settings: Settings) -> Result:
    sizes = [1000, 5000] if settings.quick else [10_000, 100_000, 1_000_000]
    result = Result("scaling", "Scaling with log size (file store)",
                    ["events in log", "append (per event)", "read a 50-event stream", "cold open (saved index)",
                     "cold open (no index)"])
    with tempdir() as d:
        path = d / "log"
        have = 0
        for size in sizes:
            store = open_store(str(path) + "?fsync=never")
            populate(store, size - have, seed=size)
            have = size
            probe = make_events(500, "probe")
            per_append = timed(lambda: [store.append(f"session/probe{size}", [e]) for e in probe]) / len(probe)
            stream = f"session/probe{size}"
            read = min(timed(lambda: list(store.read(stream, 1, 50))) for _ in range(5))
            store.close()
            with_index = timed(lambda: JsonlStore(path).close())
            [saved.unlink() for saved in (path).glob("streams.sqlite3*")]
            without = timed(lambda: JsonlStore(path).close())  # rebuilds (and saves) the index
            result.rows.append([f"{size:,}", fmt_ms(per_append), fmt_ms(read), fmt_ms(with_index), fmt_ms(without)])
    result.notes.append("append = one event per call, fsync=never (isolates the store's own work)")
    return result
