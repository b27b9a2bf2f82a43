"""Tamper evidence: edit a byte, drop, swap or insert an event — on the file store and on
Redis — and `verify()` finds it and says where. Checkpoints and expected roots catch an event
removed from the end of a stream."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import redis

from eventlog import EventStore, MessageAppended, new_event, open_store
from eventlog.integrity import verify, write_checkpoint


def fill(store: EventStore) -> list:  # type: ignore[type-arg]
    out = []
    for i in range(6):
        out += store.append(f"session/s{i % 2}", [new_event(MessageAppended(session_id=f"s{i % 2}", role="user",
                                                                            content=f"message number {i}"))])
    return out


# --- file store -------------------------------------------------------------------------------


def _file_tamper(tmp_path: Path, change: Callable[[list[bytes]], list[bytes]]) -> EventStore:
    store = open_store(str(tmp_path / "log"))
    fill(store)
    assert store.verify().ok
    store.close()
    seg = tmp_path / "log" / "00000001.jsonl"
    lines = seg.read_bytes().splitlines(keepends=True)
    seg.write_bytes(b"".join(change(lines)))
    (tmp_path / "log" / "index.msgpack").unlink()
    return open_store(str(tmp_path / "log"))


def test_file_edit_one_byte(tmp_path: Path) -> None:
    def edit(lines: list[bytes]) -> list[bytes]:
        lines[3] = lines[3].replace(b"number 3", b"number 8")
        return lines

    report = _file_tamper(tmp_path, edit).verify()
    assert not report.ok and report.first_break is not None
    assert (report.first_break.kind, report.first_break.stream, report.first_break.version,
            report.first_break.position) == ("edited", "session/s1", 2, 4)


def test_file_drop_a_line(tmp_path: Path) -> None:
    report = _file_tamper(tmp_path, lambda lines: lines[:2] + lines[3:]).verify()
    assert report.first_break is not None and report.first_break.kind == "removed"
    assert report.first_break.position == 4  # where the gap shows


def test_file_swap_two_lines(tmp_path: Path) -> None:
    report = _file_tamper(tmp_path, lambda lines: [lines[0], lines[2], lines[1], *lines[3:]]).verify()
    assert report.first_break is not None and report.first_break.kind in ("reordered", "removed")
    assert report.first_break.position in (2, 3)


def test_file_insert_a_forged_line(tmp_path: Path) -> None:
    def insert(lines: list[bytes]) -> list[bytes]:
        forged = msgspec.json.decode(lines[1])
        forged["id"] = "0190f0f0-0000-7000-8000-000000000000"
        forged["payload"]["content"] = "forged"
        return [lines[0], lines[1], msgspec.json.encode(forged) + b"\n", *lines[2:]]

    report = _file_tamper(tmp_path, insert).verify()
    assert report.first_break is not None and report.first_break.position == 2
    assert report.first_break.id == "0190f0f0-0000-7000-8000-000000000000"


def test_removing_the_last_event_of_a_stream_needs_a_checkpoint_or_root(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "log"))
    fill(store)
    root = store.verify().root
    store.close()
    seg = tmp_path / "log" / "00000001.jsonl"
    lines = seg.read_bytes().splitlines(keepends=True)
    seg.write_bytes(b"".join(lines[:-1]))  # the last event of session/s1, and of the log
    (tmp_path / "log" / "index.msgpack").unlink()
    again = open_store(str(tmp_path / "log"))
    assert again.verify().ok  # a chain alone cannot see a missing tail...
    bad = verify(again, expect_root=root)  # ...a root printed earlier can
    assert not bad.ok and bad.first_break is not None and bad.first_break.kind == "head-mismatch"


def test_checkpoint_catches_a_truncated_stream_and_verify_resumes(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "log"))
    fill(store)
    checkpoint = write_checkpoint(store)
    store.append("session/s9", [new_event(MessageAppended(session_id="s9", role="user", content="later"))])
    resumed = verify(store, resume=True)
    assert resumed.ok and resumed.resumed_from == checkpoint.payload.up_to and resumed.events == 2  # type: ignore[union-attr]
    store.close()
    seg = tmp_path / "log" / "00000001.jsonl"
    lines = seg.read_bytes().splitlines(keepends=True)
    seg.write_bytes(b"".join(lines[:5] + lines[6:]))  # drop s1's last event, before the checkpoint
    (tmp_path / "log" / "index.msgpack").unlink()
    report = open_store(str(tmp_path / "log")).verify()
    assert not report.ok and report.first_break is not None


# --- Redis ------------------------------------------------------------------------------------


def _rewrite(client: redis.Redis, change: Callable[[list[tuple[bytes, bytes]]], list[tuple[bytes, bytes]]]) -> None:
    """What a tamperer with Redis access does: rebuild the log stream with edits (entry ids
    must grow, so an edit means rewriting the stream) and swap it in."""
    entries = [(entry_id, fields[b"e"]) for entry_id, fields in client.xrange("el:{el:0}:log")]
    for entry_id, body in change(entries):
        client.xadd("el:{el:0}:tmp", {"e": body}, id=entry_id)
    client.rename("el:{el:0}:tmp", "el:{el:0}:log")


def test_redis_edit_drop_swap_insert(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)

    def fresh() -> EventStore:
        client.flushall()
        store = open_store(redis_url)
        fill(store)
        assert store.verify().ok
        return store

    def edit(e: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        e[2] = (e[2][0], e[2][1].replace(b"number 2", b"number 7"))
        return e

    def swap(e: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        # two events of one stream (entries 0 and 2 are session/s0 v1 and v2). Reordering
        # events of *different* streams is not detectable on Redis: see docs/security.md.
        e[0], e[2] = (e[0][0], e[2][1]), (e[2][0], e[0][1])
        return e

    def insert(e: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        forged = msgspec.json.decode(e[0][1])
        forged["id"] = "0190f0f0-0000-7000-8000-00000000abcd"
        forged["payload"]["content"] = "forged"
        return [e[0], (e[1][0], msgspec.json.encode(forged))] + [(f"0-{i + 3}".encode(), b) for i, (_, b) in
                                                                  enumerate(e[1:])]

    expectations = [
        (edit, lambda b: b.kind == "edited" and b.position == 3 and b.stream == "session/s0"),
        (lambda e: e[:1] + e[2:], lambda b: b.kind == "removed" and b.position == 3),
        (swap, lambda b: b.position == 1 and b.kind in ("reordered", "removed") and b.stream == "session/s0"),
        (insert, lambda b: b.id == "0190f0f0-0000-7000-8000-00000000abcd" and b.position == 2),
    ]
    for n, (change, located) in enumerate(expectations):
        store = fresh()
        _rewrite(client, change)
        report = store.verify()
        assert not report.ok and report.first_break is not None, n
        assert located(report.first_break), report.first_break


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_untouched_logs_verify(kind: str, tmp_path: Path) -> None:
    store = open_store("memory://" if kind == "memory" else str(tmp_path / "log"))
    fill(store)
    write_checkpoint(store)
    fill(store)
    report = store.verify()
    assert report.ok and report.events == 13 and report.checkpoints == 1
