"""Rebuilding every projection from the log vs raw typed msgspec decoding of the same data.

file: our `ProjectionRunner(all_projections()).catch_up()` over a file store vs reading the
same segment lines and decoding each into `Event` (msgspec, typed). Redis: the same fold
over `read_all` vs raw XRANGE pages (replies unparsed, as the store reads them) + typed decode. Peak memory (max RSS of a child process
doing only the rebuild) shows the rebuild streams instead of loading the log. Each column
runs in a fresh process of its own.

The "read only" column is the floor under the fold: the store's read for a rebuild
(`read_batches_for_fold`, with run bodies left as their stored JSON, which is how the runner
reads), every event decoded and handed to a loop that does nothing with it (no projection).
What the fold costs above it is the projections' work.
"""

from __future__ import annotations

import json
import os
import random
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import msgspec
import redis

from benchmarks._common import Result, Settings, fmt_rate, process_env, rate, redis_server, tempdir
from eventlog import (
    Actor,
    Event,
    RunRecorded,
    SessionStarted,
    SessionStateChanged,
    UserMemoryAdded,
    UserMemoryUpdated,
    new_event,
    open_store,
)
from eventlog.names import session_stream, user_stream
from projections import ProjectionRunner, all_projections


def populate(store, n: int, seed: int = 7) -> None:  # type: ignore[no-untyped-def]
    """A realistic mix: sessions with runs and state changes, users with memories."""
    rnd = random.Random(seed)
    written = 0
    s = 0
    while written < n:
        s += 1
        sid, uid = f"s{s}", f"u{s % 100}"
        actor = Actor(agent_id=rnd.choice(["planner", "coder", "reviewer"]), user_id=uid, session_id=sid)
        batch = [new_event(SessionStarted(session_id=sid, user_id=uid, agent_id=actor.agent_id), actor=actor)]
        for t in range(min(48, n - written - 2)):
            batch.append(new_event(RunRecorded(session_id=sid, run_id=f"{sid}-r{t}",
                                               run={"content": "answer " * 8, "status": "COMPLETED",
                                                    "messages": [{"role": "user", "content": "q " * 10}]}), actor=actor))
            if t % 8 == 0:
                batch.append(new_event(SessionStateChanged(session_id=sid, set={"turn": t}), actor=actor))
        store.append(session_stream(sid), batch)
        mem = [new_event(UserMemoryAdded(memory_id=f"m{s}", user_id=uid, memory="likes tea", topics=["food"]), actor=actor),
               new_event(UserMemoryUpdated(memory_id=f"m{s}", user_id=uid, memory="likes green tea"), actor=actor)]
        store.append(user_stream(uid), mem)
        written += len(batch) + len(mem)


def _raw_file(url: str) -> int:
    path = Path(url.split("?")[0])
    decoder = msgspec.json.Decoder(Event)
    n = 0
    for seg in sorted(path.glob("*.jsonl")):
        with open(seg, "rb") as f:
            for line in f:
                decoder.decode(line)
                n += 1
    return n


def _raw_redis(url: str) -> int:
    """XRANGE pages (replies unparsed, as our store reads them) + a typed decode of each entry."""
    client = redis.Redis.from_url(url)
    client.set_response_callback("XRANGE", lambda response, **options: response)
    decoder = msgspec.json.Decoder(Event)
    start, n = "-", 0
    while True:
        page = client.xrange("el:{el:0}:log", start, "+", count=1000)
        for _, fields in page:
            decoder.decode(fields[1])
            n += 1
        if len(page) < 1000:
            client.close()
            return n
        start = "(" + page[-1][0].decode()


def _read_only(url: str) -> int:
    """The floor: the store's read for a rebuild (`read_batches_for_fold`, runs left as their
    JSON, as the runner reads it) into a loop that does nothing with the events."""
    store = open_store(url)
    n = 0
    for batch in store.read_batches_for_fold(lazy_runs=True):
        for _ in batch:
            n += 1
    store.close()
    return n


def _fold(url: str) -> ProjectionRunner:
    """The rebuild. Returns the runner, so its read models outlive the timing: a process
    rebuilds them to use them, and freeing a million runs' objects (~0.2 s) is not part of
    building them (the raw decode drops each event as it goes, and is timed with that)."""
    store = open_store(url)
    runner = ProjectionRunner(store, all_projections(), use_snapshots=False)
    runner.catch_up()
    store.close()
    return runner


def peak_rss_kib() -> int:
    """This process's peak resident set (KiB). On Linux from /proc (VmHWM): `ru_maxrss`
    survives fork + exec, so a child started by a big parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def in_child(name: str, url: str) -> tuple[float, float]:
    """Run `name(url)` (one of this module's readers) in a fresh process: (seconds, peak RSS
    MiB). Every column is measured so, in the same conditions: a process that has done
    nothing else (the parent that wrote the log holds its own garbage and heap, which slowed
    whatever ran after it by a third)."""
    code = ("import sys, time; from benchmarks import replay; fn = getattr(replay, sys.argv[1]); "
            "t = time.perf_counter(); kept = fn(sys.argv[2]); t = time.perf_counter() - t; "
            "print(t, replay.peak_rss_kib())")
    out = subprocess.run([sys.executable, "-c", code, name, url], capture_output=True, text=True, timeout=1800,
                         cwd=str(Path(__file__).resolve().parents[1]), check=True, env=process_env()).stdout
    seconds, kib = out.strip().splitlines()[-1].split()
    return float(seconds), int(kib) / 1024


def measured(n: int, url: str, raw_reader: str, rounds: int) -> tuple[float, float, float, float, str]:
    """Rates (events/s) of raw, the read-only floor and the rebuild — each the median of
    `rounds` fresh processes, run interleaved (raw, floor, rebuild, raw, ...) — the ratio
    ours/raw, and the rebuild's peak RSS (MiB).

    The ratio is the median of each round's own ratio (its rebuild against the raw read just
    before it), not the ratio of the medians: this VM's speed drifts by ±20 % over a minute,
    and a round's two processes run seconds apart, so the drift cancels within a round. The
    first process to read a freshly written log was up to 40 % slower than the next ones,
    whichever it was; the medians keep that out of every column."""
    runs: dict[str, list[float]] = {raw_reader: [], "_read_only": [], "_fold": []}
    rss = 0.0
    for _ in range(rounds):
        for name, seconds in runs.items():
            took, peak = in_child(name, url)
            seconds.append(took)
            if name == "_fold":
                rss = max(rss, peak)
    raw, floor, ours = (rate(n, statistics.median(runs[k])) for k in (raw_reader, "_read_only", "_fold"))
    ratio = statistics.median(r / f for r, f in zip(runs[raw_reader], runs["_fold"]))
    return raw, floor, ours, rss, f"{ratio:.0%}"


def run(settings: Settings) -> Result:
    n = 5000 if settings.quick else 1_000_000
    rounds = 1 if settings.quick else 5
    result = Result("replay", f"Replay: rebuild all projections from {n:,} events",
                    ["store", "raw typed decode", "read only (floor)", "rebuild all projections", "ours/raw",
                     "target", "peak RSS (rebuild)"])
    with tempdir() as d:
        url = str(d / "log") + "?fsync=never"
        store = open_store(url)
        populate(store, n)
        store.close()
        # The log was written with fsync=never: flush it now, or the kernel writes ~0.5 GB back
        # while the columns below are timed (on 2 cores that took a third of the fold's time).
        os.sync()
        raw, floor, ours, rss, ratio = measured(n, url, "_raw_file", rounds)
        result.rows.append(["file", fmt_rate(raw), fmt_rate(floor), fmt_rate(ours), ratio, ">= 50%", f"{rss:.0f} MiB"])
    with redis_server() as server:
        store = open_store(server.url)
        populate(store, n if settings.quick else 200_000)
        m = sum(1 for _ in store.read_all())
        store.close()
        raw, floor, ours, rss, ratio = measured(m, server.url, "_raw_redis", rounds)
        result.rows.append([f"redis ({m:,} events)", fmt_rate(raw), fmt_rate(floor), fmt_rate(ours), ratio,
                            ">= 50%", f"{rss:.0f} MiB"])
    result.notes.append("projections: sessions, conversation, memories, workflows, actors, records — all at once")
    result.notes.append("read only: the store's read for a rebuild (batches, run bodies left as their stored JSON) "
                        "into a loop that does nothing (decode + iteration floor of any fold); raw decodes every "
                        "run into dicts, so read only can beat raw")
    result.notes.append(f"each column: the median of {rounds} fresh processes that only do that read (timed after their "
                        "imports, up to the read models being ready: freeing them is not timed), run interleaved; "
                        "peak RSS is that of the rebuild's process; ours/raw: the median of each round's own "
                        "ratio (rebuild against the raw read just before it), so the VM's drift cancels")
    return result


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(_fold(sys.argv[1]).applied))
