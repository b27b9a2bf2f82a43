"""Tamper evidence: edit a byte, drop, swap, insert or replay an event — on the file store and
on Redis — and `verify()` finds it and says where (kind, stream, version, id, position).

What a per-stream chain alone cannot see (the last event of a stream removed, events of two
streams swapped with their positions rewritten to match) is shown to pass a plain verify and
then to be caught by a checkpoint or by a root printed earlier. Plus `verify --resume`.

Layout used throughout (`fill`): positions 1..6 alternate between two streams,
    p1 s0 v1 | p2 s1 v1 | p3 s0 v2 | p4 s1 v2 | p5 s0 v3 | p6 s1 v3
so line (or Redis entry) i holds position i + 1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import redis

from eventlog import Event, EventStore, MessageAppended, new_event, open_store
from eventlog.integrity import Break, VerifyReport, verify, write_checkpoint

FORGED_ID = "0190f0f0-0000-7000-8000-000000000000"
Lines = list[bytes]


def fill(store: EventStore, n: int = 6, prefix: str = "") -> list[Event]:
    out: list[Event] = []
    for i in range(n):
        sid = f"{prefix}s{i % 2}"
        out += store.append(f"session/{sid}", [new_event(MessageAppended(session_id=sid, role="user",
                                                                         content=f"message number {i}"))])
    return out


def where(report: VerifyReport) -> tuple[str, str, int, str, int]:
    b = report.first_break
    assert not report.ok and b is not None, report
    return b.kind, b.stream, b.version, b.id, b.position


def located(b: Break | None, kind: str, event: Event) -> bool:
    return b is not None and (b.kind, b.stream, b.version, b.id, b.position) == (
        kind, event.stream, event.version, event.id, event.position)


def rewrite_position(line: bytes, position: int) -> bytes:
    body = msgspec.json.decode(line)
    body["position"] = position
    return msgspec.json.encode(body) + b"\n"


def renumber(lines: Lines) -> Lines:
    """What a careful tamperer does after removing or moving lines: make positions contiguous
    again (they are not hashed, so this alone leaves every chain intact)."""
    return [rewrite_position(line, i + 1) for i, line in enumerate(lines)]


# --- file store -------------------------------------------------------------------------------


@pytest.fixture(params=["index-deleted", "index-kept"])
def tamper(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., tuple[EventStore, list[Event], str]]:
    """Fill a file store, close it, apply `change` to the segment's lines, reopen.

    With "index-deleted" the store rebuilds its index from the files; with "index-kept" it
    finds its saved index and must notice on its own that the files changed."""

    def run(change: Callable[[Lines], Lines], *, checkpoint: bool = False) -> tuple[EventStore, list[Event], str]:
        store = open_store(str(tmp_path / "log"))
        events = fill(store)
        if checkpoint:
            events.append(write_checkpoint(store))
        report = store.verify()
        assert report.ok
        store.close()
        seg = tmp_path / "log" / "00000001.jsonl"
        seg.write_bytes(b"".join(change(seg.read_bytes().splitlines(keepends=True))))
        if request.param == "index-deleted":
            [saved.unlink() for saved in (tmp_path / "log").glob("streams.sqlite3*")]
        return open_store(str(tmp_path / "log")), events, report.root

    return run


def test_edit_one_byte_of_a_payload(tamper) -> None:  # type: ignore[no-untyped-def]
    def edit(lines: Lines) -> Lines:
        lines[3] = lines[3].replace(b"number 3", b"number 8")
        return lines

    store, events, _ = tamper(edit)
    assert where(store.verify()) == ("edited", "session/s1", 2, events[3].id, 4)


def test_drop_a_line(tamper) -> None:  # type: ignore[no-untyped-def]
    store, events, _ = tamper(lambda lines: lines[:2] + lines[3:])
    report = store.verify()
    assert where(report) == ("removed", "session/s1", 2, events[3].id, 4)  # where the gap shows
    assert "position 3 is missing" in report.first_break.detail  # type: ignore[union-attr]


def test_swap_two_lines(tamper) -> None:  # type: ignore[no-untyped-def]
    store, events, _ = tamper(lambda lines: [lines[0], lines[2], lines[1], *lines[3:]])
    report = store.verify()
    assert where(report) == ("reordered", "session/s0", 2, events[2].id, 3)
    assert "appears 1 event(s) later" in report.first_break.detail  # type: ignore[union-attr]


def test_insert_a_forged_line(tamper) -> None:  # type: ignore[no-untyped-def]
    def insert(lines: Lines) -> Lines:
        forged = msgspec.json.decode(lines[1])
        forged["id"] = FORGED_ID
        forged["payload"]["content"] = "forged"
        return [lines[0], lines[1], msgspec.json.encode(forged) + b"\n", *lines[2:]]

    store, _, _ = tamper(insert)
    assert where(store.verify()) == ("inserted", "session/s1", 1, FORGED_ID, 2)


def test_insert_a_forged_line_with_positions_renumbered(tamper) -> None:  # type: ignore[no-untyped-def]
    def insert(lines: Lines) -> Lines:
        forged = msgspec.json.decode(lines[3])  # s1 v2 again, as if it came right after s1 v1
        forged["id"] = FORGED_ID
        return renumber([lines[0], lines[1], msgspec.json.encode(forged) + b"\n", *lines[2:]])

    store, _, _ = tamper(insert)
    b = store.verify().first_break
    assert b is not None and (b.kind, b.id, b.position) == ("edited", FORGED_ID, 3)  # the id is hashed


def test_replayed_line(tamper) -> None:  # type: ignore[no-untyped-def]
    store, events, _ = tamper(lambda lines: [*lines[:3], lines[1], *lines[3:]])
    assert where(store.verify()) == ("inserted", "session/s1", 1, events[1].id, 2)


def test_drop_the_last_event_needs_a_root(tamper) -> None:  # type: ignore[no-untyped-def]
    store, _, root = tamper(lambda lines: lines[:-1])  # the last of session/s1, and of the log
    assert store.verify().ok  # a chain alone cannot see a missing tail...
    bad = verify(store, expect_root=root)  # ...a root printed earlier can
    assert where(bad)[0] == "head-mismatch"


def test_drop_the_last_event_of_a_stream_before_a_checkpoint(tamper) -> None:  # type: ignore[no-untyped-def]
    # s1 v3 (line 5) goes, positions are renumbered: every chain and position is intact, and
    # only the checkpoint (line 6, which recorded s1 at version 3) knows better.
    store, _, _ = tamper(lambda lines: renumber(lines[:5] + lines[6:]), checkpoint=True)
    b = store.verify().first_break
    assert b is not None and (b.kind, b.stream, b.version) == ("removed", "session/s1", 3)
    assert "recorded this stream at version 3" in b.detail


def test_the_same_drop_without_a_checkpoint_is_invisible(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "log"))
    fill(store)
    store.close()
    seg = tmp_path / "log" / "00000001.jsonl"
    lines = seg.read_bytes().splitlines(keepends=True)
    seg.write_bytes(b"".join(renumber(lines[:5])))
    assert open_store(str(tmp_path / "log")).verify().ok  # hence checkpoints and roots


def test_swap_across_streams_with_positions_rewritten(tamper) -> None:  # type: ignore[no-untyped-def]
    def swap(lines: Lines) -> Lines:  # s1 v1 and s0 v2 trade places; positions made to match
        return renumber([lines[0], lines[2], lines[1], *lines[3:]])

    store, _, root = tamper(swap)
    assert store.verify().ok  # each stream's chain is intact...
    assert where(verify(store, expect_root=root))[0] == "head-mismatch"  # ...the order is not


def test_swap_across_streams_before_a_checkpoint(tamper) -> None:  # type: ignore[no-untyped-def]
    store, _, _ = tamper(lambda lines: renumber([lines[0], lines[2], lines[1], *lines[3:]]), checkpoint=True)
    b = store.verify().first_break
    assert b is not None and (b.kind, b.partition, b.position) == ("reordered", 0, 6)
    assert "checkpoint at position 7" in b.detail


# --- checkpoints and resume -------------------------------------------------------------------


def test_resume_starts_at_the_checkpoint_and_matches_a_full_walk(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "log"))
    fill(store)
    first = write_checkpoint(store)
    fill(store, 2, prefix="b")
    second = write_checkpoint(store)  # written from a resumed walk
    assert isinstance(second.payload, type(first.payload))
    assert second.payload.up_to == "9" and second.payload.events == 3  # type: ignore[union-attr]
    fill(store, 3, prefix="c")
    full, resumed = verify(store), verify(store, resume=True)
    assert full.ok and resumed.ok and resumed.resumed_from == "9"
    assert (full.events, resumed.events) == (13, 4)  # the second checkpoint and what follows
    assert resumed.root == full.root and resumed.streams == full.streams  # same proof either way
    assert full.checkpoints == 2 and resumed.checkpoints == 1


def test_resume_catches_tampering_after_the_checkpoint_and_trusts_before(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "log"))
    fill(store)
    write_checkpoint(store)  # position 7
    later = fill(store, 2, prefix="b")  # positions 8, 9
    store.close()
    seg = tmp_path / "log" / "00000001.jsonl"

    def edit(index: int, old: bytes, new: bytes) -> EventStore:
        lines = seg.read_bytes().splitlines(keepends=True)
        lines[index] = lines[index].replace(old, new)
        seg.write_bytes(b"".join(lines))
        [saved.unlink() for saved in (tmp_path / "log").glob("streams.sqlite3*")]
        return open_store(str(tmp_path / "log"))

    after = edit(8, b"number 1", b"number 9")  # bs1 v1, after the checkpoint
    b = verify(after, resume=True).first_break
    assert located(b, "edited", later[1])
    after.close()
    edit(8, b"number 9", b"number 1").close()  # undo
    before = edit(0, b"number 0", b"number 5")  # s0 v1, covered by the checkpoint
    assert verify(before, resume=True).ok  # resume trusts what the checkpoint covers...
    assert where(verify(before))[:2] == ("edited", "session/s0")  # ...a full walk does not


def test_checkpoint_refuses_a_broken_log(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "log"))
    fill(store)
    store.close()
    seg = tmp_path / "log" / "00000001.jsonl"
    seg.write_bytes(seg.read_bytes().replace(b"number 2", b"number 7"))
    [saved.unlink() for saved in (tmp_path / "log").glob("streams.sqlite3*")]
    broken = open_store(str(tmp_path / "log"))
    with pytest.raises(ValueError, match="does not verify"):
        write_checkpoint(broken)
    assert not list(broken.read("log/checkpoints"))


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_untouched_logs_verify(kind: str, tmp_path: Path) -> None:
    store = open_store("memory://" if kind == "memory" else str(tmp_path / "log"))
    fill(store)
    write_checkpoint(store)
    fill(store)
    report = store.verify()
    assert report.ok and report.events == 13 and report.checkpoints == 1 and report.streams == 3


# --- Redis ------------------------------------------------------------------------------------
# Layout (eventlog/redis_store.py): partition p's log is the Stream `el:{el:p}:log`, entry id
# `0-<position>`, field `e` = the event JSON. A tamperer with Redis access edits it directly.

LOG = "el:{el:0}:log"
Entries = list[tuple[bytes, bytes]]


def _rewrite(client: redis.Redis, change: Callable[[Entries], Entries], key: str = LOG) -> None:
    """Rebuild the log stream with edits (entry ids must grow, so an edit means rewriting the
    stream) and swap it in."""
    entries = [(entry_id, fields[b"e"]) for entry_id, fields in client.xrange(key)]
    for entry_id, body in change(entries):
        client.xadd(key + ":tmp", {"e": body}, id=entry_id)
    client.rename(key + ":tmp", key)


def _renumber(entries: Entries) -> Entries:
    return [(f"0-{i + 1}".encode(), body) for i, (_, body) in enumerate(entries)]


@pytest.fixture
def rstore(redis_url: str) -> tuple[EventStore, list[Event], redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    store = open_store(redis_url)
    events = fill(store)
    assert store.verify().ok
    return store, events, client


def test_redis_edit_an_entry(rstore) -> None:  # type: ignore[no-untyped-def]
    store, events, client = rstore

    def edit(e: Entries) -> Entries:
        e[2] = (e[2][0], e[2][1].replace(b"number 2", b"number 7"))
        return e

    _rewrite(client, edit)
    assert located(store.verify().first_break, "edited", events[2])


def test_redis_xdel_an_entry(rstore) -> None:  # type: ignore[no-untyped-def]
    store, events, client = rstore
    client.xdel(LOG, "0-3")
    assert located(store.verify().first_break, "removed", events[3])


def test_redis_swap_within_a_stream(rstore) -> None:  # type: ignore[no-untyped-def]
    store, _, client = rstore

    def swap(e: Entries) -> Entries:  # s0 v1 and s0 v2 trade entries
        e[0], e[2] = (e[0][0], e[2][1]), (e[2][0], e[0][1])
        return e

    _rewrite(client, swap)
    b = store.verify().first_break
    assert b is not None and (b.kind, b.stream, b.version, b.position) == ("reordered", "session/s0", 2, 1)
    assert "version 1 is missing" in b.detail and "appears 2 event(s) later" in b.detail


def test_redis_insert_a_forged_entry(rstore) -> None:  # type: ignore[no-untyped-def]
    store, _, client = rstore

    def insert(e: Entries) -> Entries:
        forged = msgspec.json.decode(e[0][1])
        forged["id"] = FORGED_ID
        forged["payload"]["content"] = "forged"
        return _renumber([e[0], (b"", msgspec.json.encode(forged)), *e[1:]])

    _rewrite(client, insert)
    assert where(store.verify())[:4] == ("inserted", "session/s0", 1, FORGED_ID)


def test_redis_xdel_the_last_entry_needs_a_root(rstore) -> None:  # type: ignore[no-untyped-def]
    store, _, client = rstore
    root = store.verify().root
    client.xdel(LOG, "0-6")
    assert store.verify().ok
    assert where(verify(store, expect_root=root))[0] == "head-mismatch"


def test_redis_checkpoint_catches_a_dropped_tail_and_a_cross_stream_swap(rstore) -> None:  # type: ignore[no-untyped-def]
    store, _, client = rstore
    write_checkpoint(store)  # entry 0-7
    backup = [(i, f[b"e"]) for i, f in client.xrange(LOG)]

    _rewrite(client, lambda e: _renumber(e[:5] + e[6:]))  # drop s1 v3, close the gap
    b = store.verify().first_break
    assert b is not None and (b.kind, b.stream, b.version) == ("removed", "session/s1", 3)

    client.delete(LOG)
    _rewrite(client, lambda e: [(i, body) for i, body in backup])
    assert store.verify().ok  # restored
    _rewrite(client, lambda e: [e[0], (e[1][0], e[2][1]), (e[2][0], e[1][1]), *e[3:]])  # s1 v1 <-> s0 v2
    b = store.verify().first_break
    assert b is not None and (b.kind, b.position) == ("reordered", 6)


def test_redis_partitions_locate_the_partition(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store = open_store(f"{redis_url}?partitions=2")
    events = fill(store, 8)
    write_checkpoint(store)
    assert store.verify().ok and verify(store, resume=True).ok
    victim = events[1]  # session/s1, whichever partition it lives in
    key = f"el:{{el:{victim.partition}}}:log"
    client.xdel(key, f"0-{victim.position}")
    b = store.verify().first_break
    assert b is not None and b.kind == "removed" and b.partition == victim.partition
    assert f"position {victim.position} is missing" in b.detail
