"""The rebuild path: chunked catch-up, each projection's loop-form `fold`, and run bodies read
as stored JSON (`read_batches_for_fold`, `eventlog.lazy_runs`). Each must give exactly the states
of applying the events one by one (hypothesis), on every store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventlog import (
    Actor,
    CorruptLog,
    Cursor,
    Event,
    MemoryStore,
    MessageAppended,
    RunDeleted,
    RunRecorded,
    SessionDeleted,
    SessionStarted,
    codec,
    new_event,
    open_store,
)
from eventlog import jsonl as jsonl_module
from eventlog.jsonl import JsonlStore
from eventlog.lazy_runs import LazyEvent, LazyRunRecorded
from eventlog.names import session_stream
from eventlog.store import FOLD_BATCH
from projections import (
    ActorsProjection,
    ConversationProjection,
    ProjectionRunner,
    SessionsProjection,
    all_projections,
)
from projections.fold import Projection, epoch
from tests.test_projections import SIDS, appends, encoded

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
runs = st.dictionaries(st.sampled_from(["content", "agent_id", "team_id", "status", "é\u2028", "\x01k"]),
                       json_values, max_size=4)


@st.composite
def run_events(draw: st.DrawFn) -> tuple[str, Event]:
    """Run-heavy events: recorded (any JSON body, actors with and without ids), deleted,
    messages and session deletions — everything the conversation read model folds."""
    sid = draw(st.sampled_from(SIDS))
    actor = Actor(agent_id=draw(st.sampled_from([None, "a1", ""])), team_id=draw(st.sampled_from([None, "t1"])),
                  workflow_id=draw(st.sampled_from([None, "w1"])), user_id="u", session_id=sid)
    kind = draw(st.integers(0, 5))
    run_id = f"r{draw(st.integers(0, 3))}"
    if kind <= 2:
        p: Any = RunRecorded(session_id=sid, run_id=run_id, run=draw(runs))
    elif kind == 3:
        p = RunDeleted(session_id=sid, run_id=run_id)
    elif kind == 4:
        p = MessageAppended(session_id=sid, role="user", content=draw(st.text(max_size=5)), run_id=run_id)
    else:
        p = SessionDeleted(session_id=sid)
    return session_stream(sid), new_event(p, actor=actor)


mixed = st.lists(st.one_of(appends(), run_events()), min_size=1, max_size=60)


def apply_each(projection: Projection[Any], events: list[Event]) -> Any:
    state = projection.initial()
    for event in events:
        state = projection.apply(state, event)
    return state


@settings(max_examples=80, deadline=None)
@given(plan=mixed)
def test_each_projections_fold_equals_applying_one_by_one(plan: list[tuple[str, Event]]) -> None:
    store = MemoryStore()
    for stream, event in plan:
        store.append(stream, [event])
    events = list(store.read_all())
    for projection in all_projections():
        assert encoded(projection.fold(events)) == encoded(apply_each(projection, events)), projection.name
        # and folding in two parts (a chunk boundary anywhere) changes nothing
        cut = len(events) // 2
        assert encoded(projection.fold(events[cut:], projection.fold(events[:cut]))) == \
            encoded(apply_each(projection, events)), projection.name


@settings(max_examples=40, deadline=None)
@given(plan=mixed, chunk=st.sampled_from([1, 300, 700, 2000, 64 << 10]))
def test_file_rebuild_reads_runs_as_stored_json_and_equals_live_apply(
        tmp_path_factory: pytest.TempPathFactory, plan: list[tuple[str, Event]], chunk: int) -> None:
    store = open_store(str(tmp_path_factory.mktemp("log") / "log"))
    live = ProjectionRunner(store, all_projections(), use_snapshots=False)
    for stream, event in plan:
        for stored in store.append(stream, [event]):
            live.apply(stored)  # one by one, runs as dicts
    lazy = [e for batch in store.read_batches_for_fold(lazy_runs=True) for e in batch]
    plain = list(store.read_all())
    assert len(lazy) == len(plain)
    # (a run of lines holding anything unusual, such as an unknown type, is decoded the
    # exact way, runs included; otherwise every run comes back as its JSON)
    if not any(type(e.payload).__name__ == "UnknownPayload" for e in plain):
        assert [type(a.payload) is LazyRunRecorded for a in lazy] == [type(b.payload) is RunRecorded for b in plain]
    for a, b in zip(lazy, plain):
        if type(a.payload) is LazyRunRecorded:
            assert type(b.payload) is RunRecorded
            assert msgspec.json.decode(bytes(a.payload.run)) == b.payload.run
        else:
            assert a.payload == b.payload
        assert (a.id, a.position, a.version, a.actor, a.at, a.hash) == (b.id, b.position, b.version, b.actor, b.at, b.hash)
    old = jsonl_module._CHUNK
    jsonl_module._CHUNK = chunk  # batches of a line or a few: boundaries everywhere
    try:
        rebuilt = ProjectionRunner(store, all_projections(), use_snapshots=False)
        assert rebuilt.catch_up() == len(plain)
    finally:
        jsonl_module._CHUNK = old
    for name in live.states:
        assert encoded(rebuilt.states[name]) == encoded(live.states[name]), name
    assert rebuilt.cursor == live.cursor
    store.close()


def test_rebuild_on_every_store_equals_live_apply(store_factory: Any) -> None:
    store = store_factory()
    a = Actor(agent_id="a1", user_id="u", session_id="s1")
    live = ProjectionRunner(store, all_projections(), use_snapshots=False)
    for i in range(30):
        events = [new_event(RunRecorded(session_id="s1", run_id=f"r{i % 7}", run={"content": f"é {i}", "n": [i, 1.5]}), actor=a),
                  new_event(MessageAppended(session_id="s1", role="user", content=f"m{i}"), actor=a)]
        for stored in store.append(session_stream("s1"), events):
            live.apply(stored)
    rebuilt = ProjectionRunner(store, all_projections(), use_snapshots=False)
    rebuilt.catch_up()
    for name in live.states:
        assert encoded(rebuilt.states[name]) == encoded(live.states[name]), name
    conv = rebuilt.states["conversation"].sessions["s1"]
    # a run recorded again keeps its place and takes the latest body
    assert [r.run["content"] for r in conv.runs] == [f"é {max(i for i in range(30) if i % 7 == k)}" for k in range(7)]


class _PlainOnly(ConversationProjection):
    """A projection that reads run bodies as dicts (as a user's own projection would)."""

    name = "plain"
    lazy_runs = False
    seen: list[type] = []

    def apply(self, state: Any, event: Event) -> Any:
        self.seen.append(type(event.payload))
        assert not isinstance(getattr(event.payload, "run", None), msgspec.Raw)
        return super().apply(state, event)

    def fold(self, events: Any, state: Any = None) -> Any:
        return Projection.fold(self, events, state)


def test_a_projection_that_did_not_declare_lazy_runs_gets_decoded_runs(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "log"))
    store.append(session_stream("s1"), [new_event(RunRecorded(session_id="s1", run_id="r1", run={"x": 1}))])
    runner = ProjectionRunner(store, [*all_projections(), _PlainOnly()], use_snapshots=False)
    runner.catch_up()
    assert _PlainOnly.seen == [RunRecorded]
    assert runner.states["plain"].sessions["s1"].runs[0].run == {"x": 1}


def test_lazy_decode_takes_the_exact_path_for_anything_unusual() -> None:
    """A run that is not an object, an unknown type, an old schema, garbage: the lazy decoder
    gives what the plain one gives (these lines go the exact way)."""
    good = codec.encode(codec.seal(new_event(RunRecorded(session_id="s", run_id="r", run={"a": 1})),
                                   stream="session/s", version=1, prev_hash=""))
    not_object = good.replace(b'"run":{"a":1}', b'"run":[1,2]')
    unknown = good.replace(b'"run.recorded"', b'"run.someday"')
    for lines in ([good], [good, not_object], [unknown, good], [good, b"garbage", good]):
        data = b"\n".join(lines)
        told: list[tuple[bool, int]] = []
        lazy = codec.decode_lines(data, lazy_runs=True, on_corrupt=lambda at, line, exc, t=told: t.append((True, at)))
        plain = codec.decode_lines(data, on_corrupt=lambda at, line, exc, t=told: t.append((False, at)))
        assert len(lazy) == len(plain) == len(lines) - (b"garbage" in lines)
        assert told == ([(True, len(good) + 1), (False, len(good) + 1)] if b"garbage" in lines else [])
        for a, b in zip(lazy, plain):
            if type(a.payload) is LazyRunRecorded:
                assert isinstance(b.payload, RunRecorded)
                assert msgspec.json.decode(bytes(a.payload.run)) == b.payload.run
            else:
                assert a == b
    assert type(codec.decode_lines(not_object, lazy_runs=True)[0].payload).__name__ == "UnknownPayload"


def test_lazy_event_has_events_fields_in_events_order() -> None:
    """So a LazyEvent, were it ever encoded, gives the same bytes (and hash input) as Event."""
    assert [f.name for f in msgspec.structs.fields(LazyEvent)] == [f.name for f in msgspec.structs.fields(Event)]
    event = codec.seal(new_event(RunRecorded(session_id="s", run_id="r", run={"b": [1, "x"]}),
                                 actor=Actor(agent_id="a")), stream="session/s", version=1, prev_hash="")
    data = codec.encode(event)
    assert msgspec.json.encode(msgspec.json.decode(data, type=LazyEvent)) == data


class _BreaksAfter(MemoryStore):
    """A store whose log read fails after `k` events (a connection lost mid-rebuild)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def _read_all(self, after: Cursor, *, upcast: bool) -> Iterator[Event]:
        for n, event in enumerate(super()._read_all(after, upcast=upcast), after.get(0)):
            if n == self.k:
                raise OSError("connection lost")
            yield event


@pytest.mark.parametrize("k", [0, 1, 5, FOLD_BATCH, FOLD_BATCH + 3, 2500])
def test_a_read_failing_part_way_keeps_what_was_read_and_resumes(k: int) -> None:
    store = _BreaksAfter(10**9)
    a = Actor(agent_id="a1", user_id="u", session_id="s1")
    for i in range(0, 3000, 100):
        store.append(session_stream(f"s{i % 3}"), [new_event(RunRecorded(session_id=f"s{i % 3}", run_id=f"r{j}", run={"j": j}), actor=a)
                                                  for j in range(i, i + 100)])
    events = list(store.read_all())
    store.k = k  # the connection will drop after k events
    runner = ProjectionRunner(store, all_projections(), use_snapshots=False)
    with pytest.raises(OSError):
        runner.catch_up()
    # what was folded and the cursor agree: whole batches up to the failure, nothing after
    reached = runner.cursor.get(0)
    assert reached <= k and k - reached < FOLD_BATCH
    for projection in all_projections():
        assert encoded(runner.states[projection.name]) == encoded(apply_each(projection, events[:reached])), projection.name
    store.k = 10**9  # the connection is back
    runner.catch_up()
    assert runner.cursor.get(0) == len(events) == 3000
    for projection in all_projections():
        assert encoded(runner.states[projection.name]) == encoded(apply_each(projection, events)), projection.name


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc))
       | st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1)))
def test_the_folds_inlined_epoch_equals_epoch(at: Any) -> None:
    """Sessions and conversation compute `epoch(at)` inline in their loops: same seconds for
    aware, naive and pre-1970 times as `apply` (which calls `epoch`)."""
    a = Actor(agent_id="a", session_id="s1")
    later = at + timedelta(seconds=37)
    events = [codec.seal(new_event(SessionStarted(session_id="s1"), actor=a, at=at), stream="session/s1", version=1,
                         prev_hash=""),
              codec.seal(new_event(RunRecorded(session_id="s1", run_id="r1", run={}), actor=a, at=later),
                         stream="session/s1", version=2, prev_hash="")]
    for projection in (SessionsProjection(), ConversationProjection()):
        assert encoded(projection.fold(events)) == encoded(apply_each(projection, events))
    assert ConversationProjection().fold(events).sessions["s1"].runs[0].recorded_at == epoch(later) == int(later.timestamp())
    assert SessionsProjection().fold(events).sessions["s1"].updated_at == epoch(later)


@pytest.mark.parametrize("partitions", [1, 3])
def test_redis_rebuild_reads_runs_as_stored_json(redis_url: str, partitions: int) -> None:
    store = open_store(f"{redis_url}?partitions={partitions}&prefix=lz{partitions}")
    a = Actor(agent_id="a1", user_id="u")
    live = ProjectionRunner(store, all_projections(), use_snapshots=False)
    for i in range(250):
        sid = f"s{i % 5}"
        for stored in store.append(session_stream(sid), [new_event(RunRecorded(session_id=sid, run_id=f"r{i % 11}", run={"i": i, "t": "é\n"}), actor=a)]):
            live.apply(stored)
    lazy = [e for batch in store.read_batches_for_fold(lazy_runs=True) for e in batch]
    plain = list(store.read_all())
    assert [e.id for e in lazy] == [e.id for e in plain]
    assert [(e.partition, e.position) for e in lazy] == [(e.partition, e.position) for e in plain]
    assert all(type(e.payload) is LazyRunRecorded for e in lazy)
    assert [msgspec.json.decode(bytes(e.payload.run)) for e in lazy] == [e.payload.run for e in plain]
    rebuilt = ProjectionRunner(store, all_projections(), use_snapshots=False)
    rebuilt.catch_up()
    for name in live.states:
        assert encoded(rebuilt.states[name]) == encoded(live.states[name]), name
    assert rebuilt.cursor == live.cursor
    store.close()


class _OnlyDone(ConversationProjection):
    """A user's projection extending a built-in one: its `apply` reads the run as a dict."""

    name = "only_done"

    def apply(self, state: Any, event: Event) -> Any:
        p = event.payload
        if isinstance(p, RunRecorded) and p.run.get("status") != "done":
            return state
        return super().apply(state, event)


class _RunsPerSession(SessionsProjection):
    name = "runs_per_session"

    def apply(self, state: Any, event: Event) -> Any:
        state = super().apply(state, event)
        if isinstance(event.payload, RunRecorded):
            row = state.sessions.get(event.payload.session_id)
            if row is not None:
                row.fields["runs"] = row.fields.get("runs", 0) + 1
        return state


class _NoAnonymous(ActorsProjection):
    name = "no_anonymous"

    def apply(self, state: Any, event: Event) -> Any:
        return state if event.actor.user_id == "anon" else super().apply(state, event)


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_a_subclass_that_overrides_apply_is_folded_with_its_own_apply(kind: str, tmp_path: Path) -> None:
    """The built-ins' fold loops are written for their own `apply`, and their promise to take
    runs as JSON is about that `apply`: a subclass's rebuild must go through its `apply`."""
    store = MemoryStore() if kind == "memory" else open_store(str(tmp_path / "log"))
    a = Actor(agent_id="a", user_id="anon", session_id="s1")
    stored = store.append(session_stream("s1"), [
        new_event(SessionStarted(session_id="s1"), actor=a),
        new_event(RunRecorded(session_id="s1", run_id="r1", run={"status": "running"}), actor=a),
        new_event(RunRecorded(session_id="s1", run_id="r2", run={"status": "done"}), actor=Actor(agent_id="a", user_id="bob")),
    ])
    made = [_OnlyDone(), _RunsPerSession(), _NoAnonymous()]
    assert not any(p.takes_lazy_runs() for p in made)
    for projection in made:
        live = apply_each(projection, stored)
        assert encoded(projection.fold(stored)) == encoded(live)
        rebuilt = ProjectionRunner(store, [*all_projections(), type(projection)()], use_snapshots=False)
        rebuilt.catch_up()
        assert encoded(rebuilt.states[projection.name]) == encoded(live), projection.name
    assert [r.run_id for r in apply_each(_OnlyDone(), stored).sessions["s1"].runs] == ["r2"]


class _FailsOnce(Projection[list[str]]):
    """A projection whose fold fails once, part way through the log."""

    name = "fails_once"
    state_type = list
    lazy_runs = True
    failed = False

    def initial(self) -> list[str]:
        return []

    def apply(self, state: list[str], event: Event) -> list[str]:
        if event.version == 7 and not _FailsOnce.failed:
            _FailsOnce.failed = True
            raise RuntimeError("boom")
        state.append(event.id)
        return state


def test_a_fold_failing_part_way_resets_and_the_next_catch_up_counts_nothing_twice(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "log"))
    a = Actor(agent_id="a", user_id="u", session_id="s1")
    stored = store.append(session_stream("s1"), [
        new_event(RunRecorded(session_id="s1", run_id=f"r{i % 4}", run={"i": i}), actor=a) for i in range(20)])
    runner = ProjectionRunner(store, [*all_projections(), _FailsOnce()], use_snapshots=False)
    with pytest.raises(RuntimeError):
        runner.catch_up()
    assert runner.cursor.get(0) == 0  # nothing claims to be applied
    assert runner.catch_up() == 20
    for projection in [*all_projections(), _FailsOnce()]:
        assert encoded(runner.states[projection.name]) == encoded(apply_each(projection, stored)), projection.name
    assert runner.states["actors"].actors["agent:a"].events == 20


def _bad_utf8_lines() -> list[bytes]:
    """Three sealed runs: intact; bad UTF-8 inside the run's body (which `Raw` does not check
    and msgspec 0.23's typed decoder refuses); bad UTF-8 in the envelope (not an event)."""
    good = [codec.encode(codec.seal(new_event(RunRecorded(session_id="s", run_id=f"r{i}", run={"a": "é"})),
                                    stream="session/s", version=i + 1, prev_hash="")) for i in range(3)]
    return [good[0], good[1].replace("é".encode(), b"\xff"),
            good[2].replace(b'"stream":"session/s"', b'"stream":"\xff"')]


def test_lines_with_bad_utf8_are_kept_alike_by_every_read_whatever_the_msgspec_version() -> None:
    """A line whose payload holds bad UTF-8 is an event with an unknown (kept raw) payload on
    the exact and the lazy path alike; a line that is no event at all is never dropped
    silently: it raises, naming its offset, or goes to the caller's `on_corrupt`."""
    lines = _bad_utf8_lines()
    data = b"\n".join(lines[:2])
    lazy, plain = codec.decode_lines(data, lazy_runs=True), codec.decode_lines(data)
    assert [type(e.payload).__name__ for e in plain] == ["RunRecorded", "UnknownPayload"]
    assert [(e.id, type(e.payload).__name__) for e in lazy] == [(e.id, type(e.payload).__name__) for e in plain]
    assert type(codec.decode(lines[1]).payload).__name__ == "UnknownPayload"
    data = b"\n".join(lines)
    for lazy_runs in (False, True):
        with pytest.raises(CorruptLog, match=f"byte {len(lines[0]) + len(lines[1]) + 2}"):
            codec.decode_lines(data, lazy_runs=lazy_runs)
        told: list[int] = []

        def tell(at: int, line: bytes, exc: CorruptLog, told: list[int] = told) -> None:
            told.append(at)

        events = codec.decode_lines(data, lazy_runs=lazy_runs, on_corrupt=tell)
        assert len(events) + len(told) == len(lines)  # every line is an event or reported
        assert told == [len(lines[0]) + len(lines[1]) + 2]
    with pytest.raises(CorruptLog):
        codec.decode(lines[2])


def test_a_file_store_reads_every_stored_line_or_reports_it(tmp_path: Path) -> None:
    """On the file store: the line with bad UTF-8 in its run is read back (exact, lazy and
    stream reads, in place), and the one that is not an event is in `store.corrupt` and makes
    `verify` fail — the count of what reads return plus what is reported is every line."""
    from eventlog.integrity import verify

    store = JsonlStore(tmp_path / "log")
    store.append("session/s", [new_event(RunRecorded(session_id="s", run_id=f"r{i}", run={"a": "é"}))
                               for i in range(3)])
    store.close()
    segment = next((tmp_path / "log").glob("*.jsonl"))
    lines = segment.read_bytes().split(b"\n")[:3]
    lines[1] = lines[1].replace("é".encode(), b"\xff")
    lines[2] = lines[2].replace(b'"at":"', b'"at":"\xff')  # the index reads it, the event does not
    segment.write_bytes(b"\n".join(lines) + b"\n")
    store = JsonlStore(tmp_path / "log")
    try:
        exact = list(store.read_all())
        lazy = [e for batch in store.read_batches_for_fold(lazy_runs=True) for e in batch]
        assert [e.position for e in exact] == [e.position for e in lazy] == [1, 2]
        assert type(exact[1].payload).__name__ == "UnknownPayload"
        assert len(exact) + len(store.corrupt) == 3
        assert [e.version for e in store.read("session/s", to_version=2)] == [1, 2]
        report = verify(store)
        assert not report.ok
    finally:
        store.close()
