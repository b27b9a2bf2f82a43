"""The file store beyond the conformance suite: processes, torn tails, reopen, permissions."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlog import MessageAppended, new_event
from eventlog.jsonl import JsonlStore


def msg(text: str, session: str = "s1"):  # type: ignore[no-untyped-def]
    return new_event(MessageAppended(session_id=session, role="user", content=text))


def _writer(path: str, n: int, count: int) -> None:
    store = JsonlStore(path, fsync="never")
    for i in range(count):
        # two shared streams so processes contend on versions, plus batches of two
        store.append(f"session/shared{i % 2}", [msg(f"p{n}-{i}a"), msg(f"p{n}-{i}b")])
    store.close()


def test_four_processes_append_to_one_directory_without_loss(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    JsonlStore(path).close()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, n, 150)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = JsonlStore(path)
    assert store.corrupt == [] and store.recovered == []
    events = list(store.read_all())
    assert len(events) == 4 * 150 * 2
    assert len({e.id for e in events}) == len(events)
    assert [e.position for e in events] == list(range(1, len(events) + 1))
    for stream in ("session/shared0", "session/shared1"):
        chain = list(store.read(stream))
        assert [e.version for e in chain] == list(range(1, len(chain) + 1))
        assert all(b.prev_hash == a.hash for a, b in zip(chain, chain[1:]))
        # each batch of two landed together, never interleaved with another process's batch
        contents = [e.payload.content for e in chain]  # type: ignore[union-attr]
        for a, b in zip(contents[::2], contents[1::2]):
            assert a[:-1] == b[:-1] and a.endswith("a") and b.endswith("b")
    # every line on disk is whole JSON
    for line in (Path(path) / "00000001.jsonl").read_bytes().splitlines():
        assert line.startswith(b"{") and line.endswith(b"}")


def test_reopen_uses_saved_index_and_sees_later_appends(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path / "log", segment_bytes=4096)
    recorded = [store.append(f"session/s{i % 5}", [msg(str(i), f"s{i % 5}")])[0] for i in range(200)]
    store.close()
    assert len(list((tmp_path / "log").glob("*.jsonl"))) > 3  # rolled segments
    assert (tmp_path / "log" / "streams.sqlite3").exists()
    other = JsonlStore(tmp_path / "log", segment_bytes=4096)
    other.append("session/s0", [msg("late")])  # appended after the index was saved
    other_events = list(other.read_all())
    reopened = JsonlStore(tmp_path / "log", segment_bytes=4096)
    assert list(reopened.read_all()) == other_events
    assert other_events[:200] == recorded
    assert reopened.head("session/s0").version == 41
    assert [e.position for e in reopened.read_all(after=150)] == list(range(151, 202))
    other.close()
    reopened.close()


def test_stale_or_garbage_index_is_rebuilt(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path / "log")
    recorded = store.append("session/s1", [msg("a"), msg("b")])
    store.close()
    for saved in (tmp_path / "log").glob("streams.sqlite3*"):
        saved.write_bytes(b"\x93garbage")
    again = JsonlStore(tmp_path / "log")
    assert list(again.read("session/s1")) == recorded
    again.close()


def test_files_are_private(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path / "log")
    store.append("session/s1", [msg("secret")])
    store.close()
    assert stat.S_IMODE((tmp_path / "log").stat().st_mode) == 0o700
    for child in (tmp_path / "log").iterdir():
        assert stat.S_IMODE(child.stat().st_mode) == 0o600, child


def test_loose_permissions_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "log").mkdir(mode=0o755)
    os.chmod(tmp_path / "log", 0o755)
    JsonlStore(tmp_path / "log").close()
    assert "should be 0700" in caplog.text


def test_corrupt_middle_line_is_reported_and_others_survive(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path / "log")
    first = store.append("session/s1", [msg("a")])
    store.append("session/s2", [msg("b", "s2")])
    third = store.append("session/s3", [msg("c", "s3")])
    store.close()
    seg = tmp_path / "log" / "00000001.jsonl"
    lines = seg.read_bytes().splitlines(keepends=True)
    lines[1] = b"{this is not json}\n"
    seg.write_bytes(b"".join(lines))
    [saved.unlink() for saved in (tmp_path / "log").glob("streams.sqlite3*")]
    again = JsonlStore(tmp_path / "log")
    assert len(again.corrupt) == 1
    assert list(again.read("session/s1")) == first
    assert list(again.read("session/s3")) == third
    assert [e.id for e in again.read_all()] == [first[0].id, third[0].id]
    # new appends still work and positions keep growing
    assert again.append("session/s1", [msg("d")])[0].position == 4
    again.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=10_000), data=st.data())
def test_torn_last_line_at_any_byte_recovers_every_complete_event(tmp_path_factory: pytest.TempPathFactory, cut: int, data: st.DataObject) -> None:
    path = tmp_path_factory.mktemp("torn")
    store = JsonlStore(path, fsync="never")
    recorded = [store.append("session/s1", [msg(f"m{i}" * 3)])[0] for i in range(5)]
    store.close()
    [saved.unlink() for saved in (path).glob("streams.sqlite3*")]
    seg = path / "00000001.jsonl"
    raw = seg.read_bytes()
    line_starts = [0] + [i + 1 for i, b in enumerate(raw) if b == ord("\n")][:-1]
    last_start = line_starts[-1]
    last_len = len(raw) - last_start
    keep = last_start + cut % last_len  # cut the last line at any byte (incl. just its newline)
    seg.write_bytes(raw[:keep])
    again = JsonlStore(path)
    assert list(again.read("session/s1")) == recorded[:4]
    if keep > last_start:
        assert len(again.recovered) == 1
        torn = list(path.glob("*.torn-*"))
        assert len(torn) == 1 and torn[0].read_bytes() == raw[last_start:keep]
    # the next append lands on a clean line and chains to the last complete event
    new = again.append("session/s1", [msg("after")])[0]
    assert new.version == 5 and new.prev_hash == recorded[3].hash
    again.close()
    assert list(JsonlStore(path).read("session/s1"))[-1] == new


def test_fsync_policies_and_bad_policy(tmp_path: Path) -> None:
    for policy in ("always", "batch", "never"):
        store = JsonlStore(tmp_path / policy, fsync=policy)  # type: ignore[arg-type]
        store.append("session/s1", [msg("x")])
        store.flush()
        store.close()
        assert len(list(JsonlStore(tmp_path / policy).read_all())) == 1
    with pytest.raises(Exception, match="fsync must be"):
        JsonlStore(tmp_path / "bad", fsync="sometimes")  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 4), st.integers(0, 3000)), min_size=1, max_size=40),
       ranges=st.lists(st.tuples(st.integers(0, 12), st.none() | st.integers(0, 12)), min_size=1, max_size=6),
       corrupt=st.none() | st.integers(0, 200))
def test_stream_reads_and_read_all_match_what_was_appended(tmp_path_factory: pytest.TempPathFactory,
                                                           plan: list[tuple[int, int, int]],
                                                           ranges: list[tuple[int, int | None]],
                                                           corrupt: int | None) -> None:
    """Streams interleaved in small segments (so reads cross segment ends and the one-pread
    windows and 64 KiB decode runs have edges everywhere), with and without a garbage line:
    `read(stream, a, b)` and `read_all(after=k)` return exactly the stored events."""
    path = tmp_path_factory.mktemp("log")
    store = JsonlStore(path, fsync="never", segment_bytes=4096)
    appended: list = []  # type: ignore[type-arg]
    for stream, n, size in plan:
        appended += store.append(f"session/s{stream}", [msg("x" * size + str(i), f"s{stream}") for i in range(n)])
    store.close()
    lost = None
    if corrupt is not None:  # replace one line (same length) with garbage, as a hand edit would
        segments = sorted(path.glob("*.jsonl"))
        seg = segments[corrupt % len(segments)]
        lines = seg.read_bytes().splitlines(keepends=True)
        k = corrupt % len(lines)
        lost = lines[k]
        lines[k] = b"#" * (len(lines[k]) - 1) + b"\n"
        seg.write_bytes(b"".join(lines))
        [saved.unlink() for saved in (path).glob("streams.sqlite3*")]
    again = JsonlStore(path, fsync="never", segment_bytes=4096)
    kept = [e for e in appended if lost is None or f'"id":"{e.id}"'.encode() not in lost]
    for stream in range(4):
        name = f"session/s{stream}"
        mine = [e for e in kept if e.stream == name]
        assert list(again.read(name)) == mine
        for a, b in ranges:
            want = [e for e in mine if e.version >= max(1, a) and (b is None or e.version <= b)]
            assert list(again.read(name, a, b)) == want
    for after in (0, 1, len(appended) // 2, len(appended)):
        assert list(again.read_all(after=after)) == [e for e in kept if e.position > after]
    again.close()
