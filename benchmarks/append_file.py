"""Durable appends to the file store vs raw write+fsync of the same lines, same run.

- group commit: our `append` of one event per call with fsync=batch (fsync every 100 events,
  or within 50 ms) vs raw `write` of each line with an `fdatasync` every 100 lines.
- always: our `append` with fsync=always vs raw `write` + `fdatasync` per line.
The raw loops write exactly the lines our store writes (same encoded events).
"""

from __future__ import annotations

import os

from benchmarks._common import Result, Settings, fmt_rate, pct, rate, tempdir, timed
from benchmarks.append_redis import make_events
from eventlog import codec
from eventlog.jsonl import JsonlStore


def _raw(path: str, lines: list[bytes], every: int) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def go() -> None:
        for i, line in enumerate(lines, start=1):
            os.write(fd, line)
            if i % every == 0:
                os.fdatasync(fd)
        os.fdatasync(fd)

    try:
        return rate(len(lines), timed(go))
    finally:
        os.close(fd)


def run(settings: Settings) -> Result:
    n_batch = 2000 if settings.quick else 50000
    n_always = 300 if settings.quick else 3000
    result = Result("append_file", "Append, file (events/s; ratio = ours / raw)",
                    ["case", "raw", "ours", "ours/raw", "target"])
    with tempdir() as d:
        for label, policy, n, every in (("group commit (fsync/100)", "batch", n_batch, 100),
                                        ("fsync per append", "always", n_always, 1)):
            events = make_events(n)
            lines = [codec.encode(codec.seal(e, stream="session/s1", version=i + 1, prev_hash="")) + b"\n"
                     for i, e in enumerate(events)]
            raw = _raw(str(d / f"raw-{policy}.jsonl"), lines, every)
            store = JsonlStore(d / f"ours-{policy}", fsync=policy)  # type: ignore[arg-type]
            ours = rate(n, timed(lambda: ([store.append("session/s1", [e]) for e in events], store.flush())))
            store.close()
            result.rows.append([label, fmt_rate(raw), fmt_rate(ours), pct(ours, raw), ">= 80%"])
    result.notes.append("one event per append call; the file store also takes its flock and indexes each line")
    return result
