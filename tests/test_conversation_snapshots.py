"""Snapshots of a session's conversation in the shared index (`ConversationCache`).

A process that folds at least `SNAPSHOT_AFTER` events of a session in one read keeps the
result as a snapshot beside the index; a process that has not cached the session starts from
it and folds only what came after. These tests hold every read that starts from a snapshot
to a fresh fold of the whole stream, on the file store and a real Redis: whatever happened
after the snapshot (runs added, recorded again, deleted, the session deleted), and whatever
is wrong with the snapshot (unreadable, of another log, of another read-model shape).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlog import EventStore, RunDeleted, RunRecorded, SessionDeleted, SessionStarted, new_event, open_store
from eventlog.names import session_stream
from projections.conversation import ConversationProjection, ConversationState
from projections.index import open_index
from projections.index.views import SNAPSHOT_AFTER, SNAPSHOT_KIND, ConversationCache


@pytest.fixture(params=["file", "redis"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], EventStore]]:
    """Opens the same log again (another process's view of it) on each call."""
    url = str(tmp_path / "log") if request.param == "file" else f"{request.getfixturevalue('redis_url')}?prefix=snap"
    opened: list[EventStore] = []

    def make() -> EventStore:
        store = open_store(url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def _cache(store: EventStore) -> tuple[ConversationCache, Any]:
    index = open_index(store)
    assert index is not None
    partition_of = getattr(index, "partition_of", None)
    part = (lambda sid: partition_of(session_stream(sid))) if partition_of is not None else None
    return ConversationCache(store, 64 << 20, None, index, part), index


def _fresh(store: EventStore, session_id: str) -> list[tuple[Any, ...]] | None:
    state = ConversationProjection().fold(store.read(session_stream(session_id)), ConversationState({}))
    return _runs(state.sessions.get(session_id))


def _runs(conv: Any) -> list[tuple[Any, ...]] | None:
    """The runs as a reader sees them (a snapshot keeps a run as MessagePack, a fold as JSON:
    the bytes differ, what they decode to may not)."""
    return None if conv is None else [(e.run_id, e.run, e.agent_id, e.at, e.event_id, e.version)
                                      for e in conv.runs]


def _record(store: EventStore, first: int, n: int, sid: str = "s") -> None:
    store.append(session_stream(sid), [new_event(RunRecorded(session_id=sid, run_id=f"r{i}", run={"i": i, "t": "x" * 30}))
                                       for i in range(first, first + n)])


class _Reads:
    """The versions a store's `read_for_fold` starts from (the real store underneath)."""

    def __init__(self, store: EventStore) -> None:
        self.starts: list[int] = []
        read = store.read_for_fold

        def counted(stream: str, from_version: int = 1) -> list[Any]:
            self.starts.append(from_version)
            return read(stream, from_version)

        store.read_for_fold = counted  # type: ignore[method-assign]


def test_a_cold_read_starts_from_the_snapshot_and_folds_only_the_tail(stores: Callable[[], EventStore]) -> None:
    writer = stores()
    writer.append(session_stream("s"), [new_event(SessionStarted(session_id="s"))])
    _record(writer, 0, SNAPSHOT_AFTER + 10)
    first, _ = _cache(writer)
    assert _runs(first.get("s")) == _fresh(writer, "s")  # folded whole: the snapshot is kept
    _record(writer, SNAPSHOT_AFTER + 10, 3)
    _record(writer, 5, 1)  # a run recorded again after the snapshot
    writer.append(session_stream("s"), [new_event(RunDeleted(session_id="s", run_id="r7"))])
    reader = stores()
    reads = _Reads(reader)
    cold, _ = _cache(reader)
    assert _runs(cold.get("s")) == _fresh(reader, "s")
    assert reads.starts == [SNAPSHOT_AFTER + 12]  # 1 SessionStarted + SNAPSHOT_AFTER + 10 runs folded before
    writer.append(session_stream("s"), [new_event(SessionDeleted(session_id="s"))])
    again, _ = _cache(stores())
    assert again.get("s") is None and _fresh(writer, "s") is None


def test_a_writer_folding_turn_by_turn_leaves_snapshots_for_the_next_cold_read(
        stores: Callable[[], EventStore]) -> None:
    """A process writing a long session one turn at a time folds one event per read, never
    SNAPSHOT_AFTER at once; it still leaves snapshots (each once SNAPSHOT_AFTER events and a
    quarter of the stream have come since the last), so a cold read after it stops folds at
    most about a fifth of the session, and only a handful of snapshots were ever written."""
    writer = stores()
    cache, index = _cache(writer)
    writes: list[int] = []
    put = index.put_cached

    def counted(kind: str, key: str, data: bytes, partition: int | None = None) -> bool:
        writes.append(len(data))
        return bool(put(kind, key, data, partition))

    index.put_cached = counted  # type: ignore[method-assign]
    turns = 6 * SNAPSHOT_AFTER
    for i in range(turns):
        _record(writer, i, 1)
        assert cache.get("s") is not None  # the writer's own read after each turn
    assert 3 <= len(writes) <= 8, len(writes)
    reader = stores()
    reads = _Reads(reader)
    cold, _ = _cache(reader)
    assert _runs(cold.get("s")) == _fresh(reader, "s")
    assert len(reads.starts) == 1 and turns - reads.starts[0] + 1 <= turns // 4, reads.starts


def test_a_short_session_keeps_no_snapshot(stores: Callable[[], EventStore]) -> None:
    store = stores()
    _record(store, 0, SNAPSHOT_AFTER - 1)
    cache, index = _cache(store)
    assert _runs(cache.get("s")) == _fresh(store, "s")
    assert index.get_cached(SNAPSHOT_KIND, "s", 0) is None


@pytest.mark.parametrize("damage", ["garbage", "other log", "other shape"])
def test_a_snapshot_that_is_wrong_is_never_served(stores: Callable[[], EventStore], damage: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    import msgspec

    from projections.index.views import SNAPSHOT_FORM

    store = stores()
    _record(store, 0, SNAPSHOT_AFTER)
    cache, index = _cache(store)
    cache.get("s")
    _record(store, SNAPSHOT_AFTER, 2)
    data = index.get_cached(SNAPSHOT_KIND, "s", 0)
    assert data is not None
    form, version, chain, conv = msgspec.msgpack.decode(data)
    if damage == "garbage":
        bad = b"\x00not a snapshot"
    elif damage == "other log":  # a chain that the stream does not continue
        bad = msgspec.msgpack.encode((form, version, "0" * 64, conv))
    else:
        bad = msgspec.msgpack.encode((SNAPSHOT_FORM + 1, version, chain, conv))
    assert index.put_cached(SNAPSHOT_KIND, "s", bad, 0)
    reader = stores()
    cold, _ = _cache(reader)
    with caplog.at_level(logging.WARNING, logger="projections.index"):
        assert _runs(cold.get("s")) == _fresh(reader, "s")
    if damage != "other shape":  # (another shape is simply not read: a newer version's)
        assert "snapshot" in caplog.text


def test_a_reset_index_drops_its_snapshots(stores: Callable[[], EventStore]) -> None:
    from projections.index.base import INDEX_SCHEMA

    store = stores()
    _record(store, 0, SNAPSHOT_AFTER)
    cache, index = _cache(store)
    cache.get("s")
    assert index.get_cached(SNAPSHOT_KIND, "s", 0) is not None
    index.reset(INDEX_SCHEMA)
    assert index.get_cached(SNAPSHOT_KIND, "s", 0) is None


def test_snapshot_files_are_private(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "log"))
    _record(store, 0, SNAPSHOT_AFTER)
    cache, _ = _cache(store)
    cache.get("s")
    folder = tmp_path / "log" / "readmodels.sqlite3.cache"
    paths = [folder, *folder.rglob("*")]
    assert len(paths) == 3
    for path in paths:
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path
    store.close()


_op = st.one_of(
    st.tuples(st.just("run"), st.integers(0, 30), st.integers(1, 80)),  # record runs first..first+n (again if seen)
    st.tuples(st.just("delete"), st.integers(0, 30), st.just(0)),
    st.tuples(st.just("read"), st.just(0), st.just(0)),  # a fresh process reads (and may keep a snapshot)
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_op, min_size=1, max_size=12))
def test_every_read_from_a_snapshot_equals_a_fresh_fold(stores: Callable[[], EventStore],
                                                      ops: list[tuple[str, int, int]]) -> None:
    store = stores()
    sid = f"h{id(ops)}"  # a session of its own per example
    for kind, a, b in ops:
        if kind == "run":
            _record(store, a, b, sid)
        elif kind == "delete":
            store.append(session_stream(sid), [new_event(RunDeleted(session_id=sid, run_id=f"r{a}"))])
        else:
            cache, _ = _cache(stores())
            assert _runs(cache.get(sid)) == _fresh(store, sid)
    cache, _ = _cache(stores())
    assert _runs(cache.get(sid)) == _fresh(store, sid)


def test_a_snapshot_keeps_runs_as_messagepack_and_reads_them_as_a_fold_gives_them(
        stores: Callable[[], EventStore]) -> None:
    """Runs are re-encoded once, when a snapshot is written, so a cold read decodes
    MessagePack; a run MessagePack cannot hold (an integer past 64 bits) keeps its JSON."""
    import msgspec

    from projections.index.views import SNAPSHOT_FORM

    store = stores()
    store.append(session_stream("s"), [new_event(RunRecorded(session_id="s", run_id="big", run={"n": 2 ** 70, "f": 0.1}))])
    _record(store, 0, SNAPSHOT_AFTER)
    cache, index = _cache(store)
    cache.get("s")
    data = index.get_cached(SNAPSHOT_KIND, "s", 0)
    assert data is not None
    form, _, _, conv = msgspec.msgpack.decode(data)
    assert form == SNAPSHOT_FORM
    bodies = {e["run_id"]: e["body"] for e in conv["entries"].values()} if isinstance(conv, dict) else None
    assert bodies is not None
    assert bodies["r0"] == {"i": 0, "t": "x" * 30}  # a MessagePack map, not JSON text
    assert isinstance(bodies["big"], bytes) and msgspec.json.decode(bodies["big"]) == {"n": 2 ** 70, "f": 0.1}
    reader = stores()
    cold, _ = _cache(reader)
    got = cold.get("s")
    assert _runs(got) == _fresh(reader, "s")
    assert got is not None and got.get("big") is not None and got.get("big").run == {"n": 2 ** 70, "f": 0.1}  # type: ignore[union-attr]


def test_a_snapshot_of_the_earlier_form_is_still_read(stores: Callable[[], EventStore],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Runs as JSON binaries under the read model's bare schema: what snapshots were before
    the MessagePack form. They are read (and folded on from), not thrown away."""
    import msgspec

    store = stores()
    _record(store, 0, SNAPSHOT_AFTER)
    state = ConversationProjection().fold(store.read(session_stream("s")), ConversationState({}))
    conv = state.sessions["s"]
    last = list(store.read(session_stream("s")))[-1]
    index = open_index(store)
    assert index is not None
    old = msgspec.msgpack.encode((ConversationProjection.schema, last.version, last.hash, conv))
    assert index.put_cached(SNAPSHOT_KIND, "s", old, 0)
    _record(store, SNAPSHOT_AFTER, 3)
    reader = stores()
    seen: list[int] = []
    fold_from = reader.read_for_fold

    def counting(stream: str, from_version: int = 1) -> Any:
        seen.append(from_version)
        return fold_from(stream, from_version)

    reader.read_for_fold = counting  # type: ignore[method-assign]
    cold, _ = _cache(reader)
    with caplog.at_level(logging.WARNING, logger="projections.index"):
        assert _runs(cold.get("s")) == _fresh(reader, "s")
    assert seen == [last.version + 1]  # only the tail was read
    assert "snapshot" not in caplog.text


def test_a_short_sessions_first_read_looks_for_no_snapshot_and_a_long_ones_does(
        stores: Callable[[], EventStore]) -> None:
    """EventLogDb tells the conversation cache what the session row knows of the stream's
    length: a session shorter than a snapshot needs is read without looking for one (a round
    trip on Redis), a long one from its snapshot. A stream longer than its row shows
    (messages after its last session event) is folded whole: the same conversation."""
    from agno.db.base import SessionType

    from adapters.agno import EventLogDb
    from eventlog import MessageAppended

    store = stores()
    store.append(session_stream("short"), [new_event(SessionStarted(session_id="short", session_type="agent"))])
    _record(store, 0, 3, sid="short")
    store.append(session_stream("long"), [new_event(SessionStarted(session_id="long", session_type="agent"))])
    _record(store, 0, SNAPSHOT_AFTER + 5, sid="long")
    store.append(session_stream("chatty"), [new_event(SessionStarted(session_id="chatty", session_type="agent"))])
    _record(store, 0, 2, sid="chatty")
    store.append(session_stream("chatty"), [new_event(MessageAppended(session_id="chatty", role="user", content=f"m{i}"))
                                            for i in range(SNAPSHOT_AFTER + 5)])
    EventLogDb(store=stores()).get_session("long", session_type=SessionType.AGENT)  # (leaves its snapshot)
    db = EventLogDb(store=stores())
    assert db.indexer is not None
    index = db.indexer.index
    looked: list[str] = []
    real = index.get_cached

    def counting(kind: str, key: str, partition: int | None = None) -> bytes | None:
        looked.append(key)
        return real(kind, key, partition)

    index.get_cached = counting  # type: ignore[method-assign]
    for sid, runs in (("short", 3), ("long", SNAPSHOT_AFTER + 5), ("chatty", 2)):
        session = db.get_session(sid, session_type=SessionType.AGENT, deserialize=False)
        fresh = _fresh(db.store, sid)
        assert session is not None and fresh is not None and len(fresh) == runs
        assert session["runs"] == [run for _, run, *_ in fresh]  # type: ignore[index]
    assert looked == ["long"]
    db.close()
