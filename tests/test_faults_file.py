"""Faults of the file store: a writer killed (SIGKILL) inside the write of a batch, with each
fsync policy, and short writes. A batch is wholly visible or not at all, recovery is
automatic, and `verify` says what was set aside. (Issue 17, case 3.)"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from eventlog import MessageAppended, new_event
from eventlog.stores.jsonl import JsonlStore

ROOT = Path(__file__).resolve().parents[1]

# A child that appends `before` single events, then one batch of `size` events whose write is
# cut after `cut` bytes: then it either SIGKILLs itself (a real kill -9 inside the write) or
# the write fails (ENOSPC) and the child goes on with one more single event.
CUT_WRITER = textwrap.dedent("""
    import errno, os, signal, sys
    from eventlog import MessageAppended, new_event
    from eventlog.stores.jsonl import JsonlStore

    path, fsync, size, cut, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    store = JsonlStore(path, fsync=fsync)
    def msg(text):
        return new_event(MessageAppended(session_id="s", role="user", content=text))
    for i in range(3):
        store.append("session/s", [msg(f"single {i}")])
    real_write = os.write
    def cut_write(fd, data):
        part = bytes(data)[: int(len(data) * cut)]
        real_write(fd, part)
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        os.write = real_write
        raise OSError(errno.ENOSPC, "No space left on device")
    os.write = cut_write
    try:
        store.append("session/s", [msg(f"batch {i}") for i in range(size)])
    except Exception as exc:
        print(type(exc).__name__, flush=True)
    os.write = real_write
    store.append("session/s", [msg("after")])
    store.close()
""")

# A child that appends batches of random sizes forever, printing each batch's number once
# `append` returned (acknowledged), until it is killed.
BATCH_WRITER = textwrap.dedent("""
    import random, sys
    from eventlog import MessageAppended, new_event
    from eventlog.stores.jsonl import JsonlStore

    path, fsync, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    store = JsonlStore(path, fsync=fsync)
    print("ready", flush=True)
    k = 0
    while True:
        size = rng.choice([1, 2, 50, 400, 1000])
        pad = "x" * rng.randrange(10, 600)
        store.append(f"session/w{seed}", [
            new_event(MessageAppended(session_id=f"w{seed}", role="user", content=f"{seed}:{k}:{i}:{size}:{pad}"))
            for i in range(size)])
        print(k, flush=True)
        k += 1
""")


def _run(script: str, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def _contents(store: JsonlStore) -> list[str]:
    return [e.payload.content for e in store.read_all()]  # type: ignore[attr-defined]


@pytest.mark.parametrize("fsync", ["batch", "always", "never"])
@pytest.mark.parametrize("cut", [0.1, 0.5, 0.999])
def test_a_writer_killed_inside_the_write_of_a_batch_leaves_none_of_it(tmp_path: Path, fsync: str,
                                                                       cut: float) -> None:
    path = tmp_path / "log"
    done = _run(CUT_WRITER, path, fsync, 100, cut, "kill")
    assert done.returncode == -signal.SIGKILL, done.stderr
    raw = b"".join(p.read_bytes() for p in sorted(path.glob("*.jsonl")))
    assert raw.count(b'"batch ') > 0  # part of the batch did reach the file

    store = JsonlStore(path)
    assert _contents(store) == ["single 0", "single 1", "single 2"]
    assert len(store.recovered) == 1 and "incomplete batch" in store.recovered[0]
    torn = list(path.glob("*.torn-*"))
    assert len(torn) == 1 and torn[0].read_bytes().startswith(b'{"batch":100,')
    report = store.verify()
    assert report.ok and report.events == 3 and report.recovered == store.recovered
    # appending goes on where the complete log ends
    later = store.append("session/s", [new_event(MessageAppended(session_id="s", role="user", content="later"))])
    assert later[0].version == 4 and later[0].position == 4
    store.close()
    again = JsonlStore(path)
    assert _contents(again) == ["single 0", "single 1", "single 2", "later"] and again.verify().ok
    assert again.recovered == []
    again.close()


def test_a_short_write_that_fails_leaves_none_of_the_batch_and_the_writer_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "log"
    done = _run(CUT_WRITER, path, "batch", 100, 0.5, "error")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["StoreUnavailable"]
    store = JsonlStore(path)
    assert _contents(store) == ["single 0", "single 1", "single 2", "after"]
    assert [e.version for e in store.read("session/s")] == [1, 2, 3, 4]
    assert store.recovered == [] and store.verify().ok
    store.close()


def test_a_process_that_had_the_log_open_never_sees_the_cut_batch_and_repairs_before_appending(
        tmp_path: Path) -> None:
    path = tmp_path / "log"
    reader = JsonlStore(path)  # open before the crash, kept open through it
    done = _run(CUT_WRITER, path, "batch", 100, 0.6, "kill")
    assert done.returncode == -signal.SIGKILL
    assert _contents(reader) == ["single 0", "single 1", "single 2"]  # the complete lines of the batch: not shown
    assert [e.version for e in reader.read("session/s")] == [1, 2, 3]
    # its next append (under the exclusive lock) moves the cut batch aside first
    written = reader.append("session/s", [new_event(MessageAppended(session_id="s", role="user", content="next"))])
    assert written[0].version == 4 and len(reader.recovered) == 1
    reader.close()
    fresh = JsonlStore(path)
    assert _contents(fresh) == ["single 0", "single 1", "single 2", "next"] and fresh.verify().ok
    fresh.close()


@pytest.mark.slow
@pytest.mark.parametrize("fsync", ["batch", "always"])
def test_random_kill_9_of_batch_writers_every_batch_all_or_nothing(tmp_path: Path, fsync: str) -> None:
    """Real writers killed at random moments (no help from inside): after each kill every
    batch is complete or absent, and every acknowledged batch is there."""
    path = tmp_path / "log"
    rng = random.Random(17)
    acknowledged: dict[int, set[int]] = {}
    for seed in range(4):
        proc = subprocess.Popen([sys.executable, "-c", BATCH_WRITER, str(path), fsync, str(seed)],
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.2, 0.6))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        acknowledged[seed] = {int(line) for line in out.split()}

        store = JsonlStore(path)
        per_batch: Counter[tuple[int, int]] = Counter()
        sizes: dict[tuple[int, int], int] = {}
        for text in _contents(store):
            w, k, _i, size, _ = text.split(":", 4)
            per_batch[(int(w), int(k))] += 1
            sizes[(int(w), int(k))] = int(size)
        partial = {key: (n, sizes[key]) for key, n in per_batch.items() if n != sizes[key]}
        assert partial == {}
        for w, batches in acknowledged.items():
            assert batches <= {k for (ww, k) in per_batch if ww == w}
        report = store.verify()
        assert report.ok, report.first_break
        store.close()


def test_single_event_appends_are_not_framed_and_batches_are(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path / "log")
    store.append("session/s", [new_event(MessageAppended(session_id="s", role="user", content="one"))])
    store.append("session/s", [new_event(MessageAppended(session_id="s", role="user", content=str(i)))
                               for i in range(3)])
    store.close()
    lines = (tmp_path / "log" / "00000001.jsonl").read_bytes().splitlines()
    assert lines[0].startswith(b'{"id":') and lines[1].startswith(b'{"batch":3,"id":')
    assert all(line.startswith(b'{"id":') for line in lines[2:])


def test_an_old_log_without_batch_frames_opens_and_reads_whole(tmp_path: Path) -> None:
    """Logs written before batches were framed: every complete line is an event, as before
    (and a torn last line is still set aside)."""
    path = tmp_path / "log"
    store = JsonlStore(path)
    written = store.append("session/s", [new_event(MessageAppended(session_id="s", role="user", content=str(i)))
                                         for i in range(5)])
    store.close()
    segment = path / "00000001.jsonl"
    raw = segment.read_bytes()
    old = raw.replace(b'{"batch":5,', b"{", 1)
    segment.write_bytes(old + old.splitlines()[0][:40])  # plus a torn line
    [saved.unlink() for saved in (path).glob("streams.sqlite3*")]
    again = JsonlStore(path)
    assert list(again.read("session/s")) == written
    assert len(again.recovered) == 1 and "torn last line" in again.recovered[0]
    assert again.verify().ok
    again.close()


def test_a_batch_frame_is_outside_the_hash(tmp_path: Path) -> None:
    """The frame is not part of the event: read back, re-encoded and re-verified, the events
    are those `append` returned."""
    store = JsonlStore(tmp_path / "log")
    written = store.append("session/s", [new_event(MessageAppended(session_id="s", role="user", content=str(i)))
                                         for i in range(4)])
    assert list(store.read_all()) == written
    first = (tmp_path / "log" / "00000001.jsonl").read_bytes().splitlines()[0]
    assert json.loads(first)["batch"] == 4
    assert store.verify().ok
    store.close()


def test_a_batch_longer_than_the_index_read_window_is_indexed_whole(tmp_path: Path) -> None:
    """A batch whose lines span more than one read of the scan (8 MiB) is still taken whole."""
    path = tmp_path / "log"
    store = JsonlStore(path, max_event_bytes=1 << 20)
    pad = "y" * 60_000
    store.append("session/s", [new_event(MessageAppended(session_id="s", role="user", content=f"{i}{pad}"))
                               for i in range(200)])  # ~12 MiB in one write
    store.close()
    [saved.unlink() for saved in (path).glob("streams.sqlite3*")]
    again = JsonlStore(path, max_event_bytes=1 << 20)
    assert len(list(again.read("session/s"))) == 200 and again.recovered == []
    again.close()
    os.truncate(path / "00000001.jsonl", (path / "00000001.jsonl").stat().st_size - 100)
    [saved.unlink() for saved in (path).glob("streams.sqlite3*")]
    cut = JsonlStore(path, max_event_bytes=1 << 20)
    assert list(cut.read("session/s")) == [] and "incomplete batch" in cut.recovered[0]
    cut.close()
