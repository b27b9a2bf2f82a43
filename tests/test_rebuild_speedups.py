"""What the rebuild's faster paths must keep exact: the sessions fold settling a stretch of
runs once, the conversation's runs kept in one dict, read models the cyclic GC does not walk,
the runner's per-type routing, and a file store that leaves an unchanged index alone."""

from __future__ import annotations

import gc
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventlog import (
    Actor,
    Event,
    MemoryStore,
    RunDeleted,
    RunRecorded,
    SessionDeleted,
    SessionStarted,
    SessionStateChanged,
    UserMemoryAdded,
    new_event,
    open_store,
)
from eventlog.names import session_stream, user_stream
from projections import ConversationProjection, ProjectionRunner, SessionsProjection, all_projections
from projections.fold import Projection
from tests.test_rebuild_fold import apply_each

_TZS = [timezone.utc, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)), None]
times = st.builds(
    lambda at, tz: at.replace(tzinfo=tz),
    st.datetimes(min_value=datetime(1969, 12, 31), max_value=datetime(1970, 1, 2))
    | st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 1, 1, 0, 0, 5)),
    st.sampled_from(_TZS),
)


@st.composite
def session_events(draw: st.DrawFn) -> Event:
    """Mostly runs (so stretches form), at any time — aware in several zones, naive, either
    side of 1970, going backwards — with the events that end a stretch in between."""
    sid = draw(st.sampled_from(["s1", "s2"]))
    kind = draw(st.integers(0, 9))
    if kind <= 5:
        p: Any = RunRecorded(session_id=sid, run_id=f"r{draw(st.integers(0, 3))}", run={"n": kind})
    elif kind == 6:
        p = SessionStarted(session_id=sid, user_id="u")
    elif kind == 7:
        p = SessionStateChanged(session_id=sid, set={"k": kind})
    elif kind == 8:
        p = RunDeleted(session_id=sid, run_id=f"r{draw(st.integers(0, 3))}")
    else:
        p = SessionDeleted(session_id=sid)
    event = new_event(p, actor=Actor(agent_id="a", session_id=sid), at=draw(times))
    return msgspec.structs.replace(event, stream=session_stream(sid), version=draw(st.integers(1, 50)))


@settings(max_examples=300, deadline=None)
@given(events=st.lists(session_events(), min_size=1, max_size=40), cut=st.integers(0, 40))
def test_sessions_fold_settles_stretches_of_runs_exactly_as_apply(events: list[Event], cut: int) -> None:
    projection = SessionsProjection()
    expected = msgspec.msgpack.encode(apply_each(projection, events))
    assert msgspec.msgpack.encode(projection.fold(events)) == expected
    cut = min(cut, len(events))  # a batch boundary inside a stretch
    assert msgspec.msgpack.encode(projection.fold(events[cut:], projection.fold(events[:cut]))) == expected


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["record", "delete"]), st.integers(0, 5)), max_size=40),
       n=st.integers(-1, 8))
def test_conversation_runs_keep_the_order_a_list_with_an_index_would(ops: list[tuple[str, int]], n: int) -> None:
    """Reference: a plain list of run ids (recording an existing run replaces it in place, a
    new one goes last, a deleted one leaves) and a count of replacements and deletions."""
    events, order, bodies, rewrites = [], [], {}, 0
    for i, (op, k) in enumerate(ops):
        run_id = f"r{k}"
        if op == "record":
            events.append(new_event(RunRecorded(session_id="s1", run_id=run_id, run={"i": i})))
            if run_id in order:
                rewrites += 1
            else:
                order.append(run_id)
            bodies[run_id] = {"i": i}
        else:
            events.append(new_event(RunDeleted(session_id="s1", run_id=run_id)))
            if run_id in order:
                order.remove(run_id)
                rewrites += 1
    projection = ConversationProjection()
    for state in (projection.fold(events), apply_each(projection, events)):
        conv = state.sessions.get("s1")
        if conv is None:
            assert not order and rewrites == 0  # (only deletions of runs never recorded)
            continue
        assert [r.run_id for r in conv.runs] == order
        assert [r.run for r in conv.runs] == [bodies[r] for r in order]
        assert conv.rewrites == rewrites
        for k in range(6):
            run_id = f"r{k}"
            assert conv.run_index(run_id) == (order.index(run_id) if run_id in order else -1)
            entry = conv.get(run_id)
            assert (entry.run_id if entry else None) == (run_id if run_id in order else None)
        expected = order if n < 0 else (order[-n:] if n > 0 else [])
        assert [r.run_id for r in conv.last_runs(None if n < 0 else n)] == expected


def test_recorded_at_is_the_events_time_in_whole_seconds() -> None:
    at = datetime(2026, 3, 1, 12, 0, 7, 900_000, tzinfo=timezone.utc)
    state = ConversationProjection().fold([new_event(RunRecorded(session_id="s", run_id="r", run={}), at=at)])
    entry = state.sessions["s"].runs[0]
    assert entry.at == at and entry.recorded_at == int(at.timestamp())


def test_a_rebuilt_history_is_not_walked_by_the_cyclic_gc(tmp_path: Path) -> None:
    """Runs, sessions and memories are held by structures the GC does not track (so a full
    collection does not touch a million entries); the states still read back whole."""
    store = open_store(str(tmp_path / "log"))
    for s in range(3):
        sid = f"s{s}"
        store.append(session_stream(sid), [new_event(SessionStarted(session_id=sid, user_id="u"))]
                     + [new_event(RunRecorded(session_id=sid, run_id=f"r{i}", run={"i": i})) for i in range(5)])
        store.append(user_stream("u"), [new_event(UserMemoryAdded(memory_id=f"m{s}", user_id="u", memory="x",
                                                                  topics=["t"]))])
    runner = ProjectionRunner(store, all_projections(), use_snapshots=False)
    runner.catch_up()
    conv = runner.states["conversation"].sessions
    assert [len(c.runs) for c in conv.values()] == [5, 5, 5]
    for c in conv.values():
        assert not gc.is_tracked(c) and not gc.is_tracked(c.entries)
        assert not any(gc.is_tracked(e) for e in c.entries.values())
    assert not any(gc.is_tracked(r) for r in runner.states["sessions"].sessions.values())
    assert not any(gc.is_tracked(m) for m in runner.states["memories"].memories.values())
    store.close()


class _Seen(Projection[list[tuple[str, str]]]):
    """Records what the runner hands it: only the types it handles, in log order."""

    name = "seen"
    state_type = list
    handles = (SessionStarted, UserMemoryAdded, RunRecorded)
    lazy_runs = True

    def initial(self) -> list[tuple[str, str]]:
        return []

    def apply(self, state: list[tuple[str, str]], event: Event) -> list[tuple[str, str]]:
        state.append((event.type, event.id))
        return state


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_the_runner_routes_each_batch_by_type_in_log_order(kind: str, tmp_path: Path) -> None:
    store = MemoryStore() if kind == "memory" else open_store(str(tmp_path / "log"))
    for s in range(40):  # batches with and without the handled types, several mixes
        sid = f"s{s}"
        events = [new_event(SessionStateChanged(session_id=sid, set={"k": s}))]
        if s % 3 == 0:
            events.append(new_event(SessionStarted(session_id=sid)))
        if s % 5 == 0:
            events += [new_event(RunRecorded(session_id=sid, run_id=f"r{i}", run={"i": i})) for i in range(70)]
        store.append(session_stream(sid), events)
        if s % 7 == 0:
            store.append(user_stream("u"), [new_event(UserMemoryAdded(memory_id=f"m{s}", user_id="u", memory="x"))])
    runner = ProjectionRunner(store, [_Seen(), *all_projections()], use_snapshots=False)
    runner.catch_up()
    wanted = [(e.type, e.id) for e in store.read_all() if isinstance(e.payload, _Seen.handles)]
    assert runner.states["seen"] == wanted and len(wanted) > 500
    store.close()


def test_closing_a_file_store_leaves_an_unchanged_index_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "log"
    store = open_store(str(path))
    store.append("session/s1", [new_event(SessionStarted(session_id="s1"))])
    store.close()
    index = path / "streams.sqlite3"
    before = index.stat()
    os.utime(index, ns=(before.st_atime_ns, before.st_mtime_ns - 10**9))  # (a rewrite would move it)
    before = index.stat()
    reader = open_store(str(path))
    assert len(list(reader.read_all())) == 1
    reader.close()
    after = index.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # an append does reach the saved index, and a reopen trusts it
    writer = open_store(str(path))
    writer.append("session/s1", [new_event(SessionStateChanged(session_id="s1", set={"a": 1}))])
    writer.close()
    assert index.stat().st_mtime_ns != before.st_mtime_ns
    from eventlog.jsonl_index import StreamIndex

    saved, loaded = StreamIndex.open(path)
    assert loaded and saved.count == 2
    saved.close()
    assert [e.position for e in open_store(str(path)).read_all()] == [1, 2]


def test_naive_times_are_never_settled_as_a_stretch(monkeypatch: pytest.MonkeyPatch) -> None:
    """`epoch` reads a naive time in local time, where a later time can give fewer seconds
    (02:30 does not exist on the night clocks go forward and counts as 07:30 UTC, 03:10 as
    07:10 UTC): the latest naive time of a stretch is not its latest second."""
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        sid = "s1"
        events = [msgspec.structs.replace(new_event(SessionStarted(session_id=sid), at=datetime(2026, 3, 8, 1)),
                                          version=1)]
        for v, at in enumerate([datetime(2026, 3, 8, 2, 30), datetime(2026, 3, 8, 3, 10)], start=2):
            events.append(msgspec.structs.replace(
                new_event(RunRecorded(session_id=sid, run_id=f"r{v}", run={}), at=at), version=v))
        projection = SessionsProjection()
        expected = apply_each(projection, events).sessions[sid]
        assert expected.updated_at == int(datetime(2026, 3, 8, 2, 30).timestamp())  # the earlier time's
        assert projection.fold(events).sessions[sid] == expected
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_a_redis_page_with_an_id_this_store_does_not_write_is_read_entry_by_entry(redis_url: str) -> None:
    """Pages are taken apart at C speed only when every id is `0-<position>`; an entry another
    client added under a time-based id still comes back once, at the position its id names."""
    import redis as redis_lib

    from eventlog import codec

    store = open_store(f"{redis_url}?prefix=fid")
    first = store.append("session/s1", [new_event(RunRecorded(session_id="s1", run_id=f"r{i}", run={"i": i}))
                                        for i in range(130)])
    client = redis_lib.Redis.from_url(redis_url)
    seq = client.incr("fid:{fid:0}:seq")
    foreign = msgspec.structs.replace(first[0], id="foreign-1")
    client.xadd("fid:{fid:0}:log", {b"e": codec.encode(foreign)}, id=f"9-{seq}")
    plain = list(store.read_all())
    lazy = [e for batch in store.read_batches_for_fold(lazy_runs=True) for e in batch]
    assert [(e.id, e.position) for e in plain] == [(e.id, e.position) for e in lazy]
    assert [e.position for e in plain] == [*range(1, 131), 131]
    assert plain[-1].id == "foreign-1" and plain[:-1] == first
    client.close()
    store.close()


@st.composite
def actor_events(draw: st.DrawFn) -> Event:
    """Known and unknown payload types (an unknown one may carry a known type's name), from
    actors that change now and then (some with no ids at all)."""
    from eventlog import UnknownPayload

    actor = draw(st.sampled_from([Actor(agent_id="a"), Actor(agent_id="a", user_id="u"), Actor(team_id="t"),
                                  Actor()]))
    kind = draw(st.integers(0, 3))
    if kind == 0:
        p: Any = RunRecorded(session_id="s", run_id="r", run={})
    elif kind == 1:
        p = SessionStateChanged(session_id="s", set={})
    else:
        p = UnknownPayload(kind=draw(st.sampled_from(["x.y", "run.recorded", "z"])), raw=b"{}")
    return new_event(p, actor=actor, at=draw(times.filter(lambda t: t.tzinfo is not None)))


@settings(max_examples=200, deadline=None)
@given(events=st.lists(actor_events(), max_size=30), cut=st.integers(0, 30))
def test_actors_fold_counts_names_and_order_exactly_as_apply(events: list[Event], cut: int) -> None:
    from projections import ActorsProjection

    projection = ActorsProjection()
    expected = apply_each(projection, events)
    for got in (projection.fold(events), projection.fold(events[cut:], projection.fold(events[:cut]))):
        assert msgspec.msgpack.encode(got) == msgspec.msgpack.encode(expected)
        assert [list(c.types) for c in got.actors.values()] == [list(c.types) for c in expected.actors.values()]


@pytest.mark.parametrize("foreign", ["blank+spaced", "comma"])
def test_a_blank_entry_and_two_events_in_one_entry_cannot_shift_a_redis_page(redis_url: str, foreign: str) -> None:
    """Joined as lines, a blank entry (-1 event) and an entry holding two events side by side
    (+1) would cancel out and move every later event of the page onto its neighbour's
    position. Decoded as one JSON array, either breaks the page, which is then read entry by
    entry: both foreign entries are skipped, every event of ours keeps its own position."""
    import redis as redis_lib

    from eventlog import codec

    prefix = f"gl{len(foreign)}"
    store = open_store(f"{redis_url}?prefix={prefix}")
    first = store.append("session/s1", [new_event(RunRecorded(session_id="s1", run_id=f"r{i}", run={"i": i}))
                                        for i in range(20)])
    client = redis_lib.Redis.from_url(redis_url)
    datas = ([b"", codec.encode(first[0]) + b" " + codec.encode(first[1])] if foreign == "blank+spaced"
             else [codec.encode(first[2]) + b"," + codec.encode(first[3])])
    for data in datas:
        seq = client.incr(f"{prefix}:{{{prefix}:0}}:seq")
        client.xadd(f"{prefix}:{{{prefix}:0}}:log", {b"e": data}, id=f"0-{seq}")
    second = store.append("session/s1", [new_event(RunRecorded(session_id="s1", run_id=f"q{i}", run={"i": i}))
                                         for i in range(20)])
    for events in (list(store.read_all()), [e for b in store.read_batches_for_fold(lazy_runs=True) for e in b]):
        assert [(e.id, e.position) for e in events] == [(e.id, e.position) for e in first + second]
        assert [e.position for e in events] == [*range(1, 21), *range(21 + len(datas), 41 + len(datas))]
    client.close()
    store.close()


def test_a_redis_page_with_a_gap_in_its_ids_keeps_each_events_position(redis_url: str) -> None:
    """A page whose ids are all `0-<position>` but not contiguous (an entry deleted in the
    middle) cannot take its positions from its first and last id: each is read."""
    import redis as redis_lib

    store = open_store(f"{redis_url}?prefix=gap")
    stored = store.append("session/s1", [new_event(RunRecorded(session_id="s1", run_id=f"r{i}", run={"i": i}))
                                         for i in range(30)])
    client = redis_lib.Redis.from_url(redis_url)
    client.xdel("gap:{gap:0}:log", "0-11")
    kept = [e for e in stored if e.position != 11]
    for events in (list(store.read_all()), [e for b in store.read_batches_for_fold(lazy_runs=True) for e in b]):
        assert [(e.id, e.position) for e in events] == [(e.id, e.position) for e in kept]
    client.close()
    store.close()
