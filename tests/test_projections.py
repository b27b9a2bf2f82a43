"""Projections: fold invariants (hypothesis), read models on every store, runner, snapshots,
time travel, diff and fork."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventlog import (
    Actor,
    EventStore,
    MemoryStore,
    RunRecorded,
    SessionRenamed,
    SessionStarted,
    SessionStateChanged,
    SessionSummaryChanged,
    UnknownPayload,
    UserMemoriesCleared,
    UserMemoryAdded,
    UserMemoryDeleted,
    UserMemoryUpdated,
    WorkflowStateSaved,
    WorkflowStepCompleted,
    new_event,
    open_store,
)
from eventlog.names import session_stream, user_stream, workflow_stream
from projections import (
    ConversationProjection,
    ProjectionRunner,
    SessionsProjection,
    UserMemoriesProjection,
    WorkflowsProjection,
    all_projections,
    audit,
    diff,
    fork_session,
    memory_stats,
    memory_topics,
    query_memories,
    query_sessions,
    session_at,
    state_at,
    workflow_key,
)

SIDS = ["s1", "s2"]
UIDS = ["alice", "bob"]
AGENTS = ["planner", "coder"]

keys = st.sampled_from(["a", "b", "c"])
values = st.one_of(st.integers(-5, 5), st.text(max_size=5), st.none())


@st.composite
def appends(draw: st.DrawFn) -> tuple[str, Any]:
    """One (stream, event) of a random kind."""
    kind = draw(st.integers(0, 9))
    sid, uid, agent = draw(st.sampled_from(SIDS)), draw(st.sampled_from(UIDS)), draw(st.sampled_from(AGENTS))
    actor = Actor(agent_id=agent, user_id=uid, session_id=sid, run_id=f"r{draw(st.integers(0, 3))}")
    mid = f"m{draw(st.integers(0, 4))}"
    if kind == 0:
        p: Any = SessionStarted(session_id=sid, user_id=uid, agent_id=agent, name=draw(st.text(max_size=4)))
    elif kind == 1:
        p = SessionStateChanged(session_id=sid, set=draw(st.dictionaries(keys, values, max_size=2)),
                                removed=draw(st.lists(keys, max_size=1)))
    elif kind == 2:
        p = RunRecorded(session_id=sid, run_id=f"r{draw(st.integers(0, 3))}", run={"content": draw(st.text(max_size=4))})
    elif kind == 3:
        p = SessionRenamed(session_id=sid, name=draw(st.text(max_size=4)))
    elif kind == 4:
        p = UserMemoryAdded(memory_id=mid, user_id=uid, memory=draw(st.text(max_size=6)), topics=draw(st.lists(keys, max_size=2)))
    elif kind == 5:
        p = UserMemoryUpdated(memory_id=mid, user_id=uid, memory=draw(st.text(max_size=6)))
    elif kind == 6:
        p = UserMemoryDeleted(memory_id=mid, user_id=uid)
    elif kind == 7:
        p = WorkflowStepCompleted(workflow="deploy", session_id=sid, step=draw(st.integers(1, 5)), total=5)
    elif kind == 8:
        p = UnknownPayload(kind="future.thing", raw=b'{"type":"future.thing","x":1}')
    else:
        p = UserMemoriesCleared(user_id=uid) if draw(st.booleans()) else SessionSummaryChanged(session_id=sid, summary={"s": 1})
    stream = {0: session_stream(sid), 1: session_stream(sid), 2: session_stream(sid), 3: session_stream(sid),
              7: workflow_stream("deploy", sid), 8: "misc/x"}.get(kind, user_stream(uid))
    return stream, new_event(p, actor=actor)


def encoded(state: Any) -> bytes:
    return msgspec.msgpack.encode(state)


@settings(max_examples=60, deadline=None)
@given(plan=st.lists(appends(), min_size=1, max_size=40), k=st.integers(0, 40))
def test_live_equals_rebuild_equals_snapshot_plus_rest_and_at_k_is_prefix_fold(plan: list[tuple[str, Any]], k: int) -> None:
    store = MemoryStore()
    live = ProjectionRunner(store, all_projections(), use_snapshots=False)
    for stream, event in plan:
        store.append(stream, [event])
        live.catch_up()  # applied as they arrive
    rebuilt = ProjectionRunner(store, all_projections(), use_snapshots=False)
    rebuilt.catch_up()
    events = list(store.read_all())
    k = min(k, len(events))
    # snapshot after k events, then the rest
    partial = ProjectionRunner(store, all_projections(), use_snapshots=False)
    for e in events[:k]:
        partial.apply(e)
    partial.save_snapshots()
    resumed = ProjectionRunner(store, all_projections(), use_snapshots=True)
    resumed.catch_up()
    for name in live.states:
        assert encoded(live.states[name]) == encoded(rebuilt.states[name]) == encoded(resumed.states[name]), name
    # the state at position k equals the fold of the first k events
    for projection in all_projections():
        at_k = state_at(store, projection, k)
        assert encoded(at_k) == encoded(projection.fold(events[:k]))
        if k:
            assert encoded(state_at(store, projection, events[k - 1].id)) == encoded(at_k)


def seed(store: EventStore) -> dict[str, Any]:
    """A small realistic history: two sessions, memories of two users, a workflow."""
    a = Actor(agent_id="planner", user_id="alice", session_id="s1", run_id="r1")
    out: dict[str, Any] = {}
    out["start"] = store.append(session_stream("s1"), [new_event(SessionStarted(session_id="s1", user_id="alice", agent_id="planner", name="first"), actor=a)])
    out["run1"] = store.append(session_stream("s1"), [new_event(RunRecorded(session_id="s1", run_id="r1", run={"content": "plan it"}), actor=a),
                                                      new_event(SessionStateChanged(session_id="s1", set={"step": 1}), actor=a)])
    b = Actor(agent_id="coder", user_id="alice", session_id="s1", run_id="r2")
    out["mem"] = store.append(user_stream("alice"), [new_event(UserMemoryAdded(memory_id="m1", user_id="alice", memory="likes tea", topics=["food"]), actor=b)])
    out["run2"] = store.append(session_stream("s1"), [new_event(RunRecorded(session_id="s1", run_id="r2", run={"content": "code it"}), actor=b),
                                                      new_event(SessionStateChanged(session_id="s1", set={"step": 2}, removed=[]), actor=b)])
    out["mem2"] = store.append(user_stream("alice"), [new_event(UserMemoryUpdated(memory_id="m1", user_id="alice", memory="likes green tea", old_memory="likes tea", topics=["food", "drink"]), actor=b)])
    store.append(user_stream("bob"), [new_event(UserMemoryAdded(memory_id="m2", user_id="bob", memory="uses vim", topics=["tools"]), actor=Actor(agent_id="coder", user_id="bob"))])
    store.append(session_stream("s2"), [new_event(SessionStarted(session_id="s2", user_id="bob", agent_id="coder", session_type="team", team_id="t1"))])
    w = Actor(workflow_id="deploy", session_id="s1", agent_id="reviewer")
    store.append(workflow_stream("deploy", "s1"), [new_event(WorkflowStateSaved(workflow="deploy", session_id="s1", state={"step": 3, "total": 5}), actor=w)]
                 + [new_event(WorkflowStepCompleted(workflow="deploy", session_id="s1", step=i, name=f"step{i}", total=5), actor=w) for i in (1, 2, 3)])
    return out


def test_read_models_on_every_store(store: EventStore) -> None:
    marks = seed(store)
    runner = ProjectionRunner(store, all_projections())
    runner.catch_up()
    with runner.reading("sessions") as sessions:
        rows, total = query_sessions(sessions, user_id="alice")
        assert total == 1 and rows[0].name == "first" and rows[0].state == {"step": 2}
        rows, total = query_sessions(sessions, session_type="team")
        assert [r.session_id for r in rows] == ["s2"]
        rows, total = query_sessions(sessions, sort_by="session_id", sort_order="asc", limit=1, page=2)
        assert total == 2 and [r.session_id for r in rows] == ["s2"]
    with runner.reading("conversation") as conv:
        c = conv.sessions["s1"]
        assert [r.run_id for r in c.runs] == ["r1", "r2"]
        assert [r.run_id for r in c.last_runs(1)] == ["r2"]
        assert [r.agent_id for r in c.runs] == ["planner", "coder"]
    with runner.reading("memories") as mem:
        rows, total = query_memories(mem, user_id="alice")
        assert total == 1 and rows[0].memory == "likes green tea" and rows[0].created_by == "coder"
        assert rows[0].changes == 2
        assert [r.memory_id for r in query_memories(mem, topics=["tools"])[0]] == ["m2"]
        assert [r.memory_id for r in query_memories(mem, search_content="VIM")[0]] == ["m2"]
        assert [r.memory_id for r in query_memories(mem, agent_id="coder", limit=1, page=1)[0]] in (["m1"], ["m2"])
        assert memory_topics(mem, "alice") == ["food", "drink"]
        assert {s["user_id"] for s in memory_stats(mem)} == {"alice", "bob"}
    with runner.reading("workflows") as wf:
        row = wf.workflows[workflow_key("deploy", "s1")]
        assert row.next_step == 4 and row.state == {"step": 3, "total": 5} and not row.done
    assert [e.type for e in audit(store, agent_id="coder", user_id="alice")] == ["memory.added", "run.recorded", "session.state_changed", "memory.updated"]
    assert {e.actor.run_id for e in audit(store, agent_id="planner")} == {"r1"}
    # time travel: before the second run, one run and the old state and memory
    before = marks["run2"][0].position - 1 if store.partitions == 1 else marks["mem"][0].id
    row_state, conv_state = session_at(store, "s1", before)
    assert [r.run_id for r in conv_state.sessions["s1"].runs] == ["r1"]
    assert row_state.sessions["s1"].state == {"step": 1}
    mem_then = state_at(store, UserMemoriesProjection(), marks["mem"][0].id)
    assert mem_then.memories["m1"].memory == "likes tea"
    changes = diff(store, marks["mem"][0].id, marks["mem2"][0].id)
    kinds = {(c.kind, c.key) for c in changes}
    assert ("run.added", "s1:r2") in kinds and ("state.set", "s1:step") in kinds and ("memory.changed", "m1") in kinds
    assert len(changes) == 3


def test_restart_reads_the_same_models(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "log"))
    seed(store)
    runner = ProjectionRunner(store, all_projections())
    runner.catch_up()
    before = {name: encoded(state) for name, state in runner.states.items()}
    runner.save_snapshots()
    store.close()
    del runner, store
    for use_snapshots in (True, False):
        reopened = open_store(str(tmp_path / "log"))
        again = ProjectionRunner(reopened, all_projections(), use_snapshots=use_snapshots)
        read = again.catch_up()
        assert (read == 0) if use_snapshots else read > 0
        assert {name: encoded(state) for name, state in again.states.items()} == before
        reopened.close()


def test_snapshot_with_other_schema_is_discarded(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "log"))
    seed(store)
    runner = ProjectionRunner(store, [SessionsProjection()])
    runner.catch_up()
    runner.save_snapshots()

    class SessionsV2(SessionsProjection):
        schema = 2

    fresh = ProjectionRunner(store, [SessionsV2()])
    assert fresh.states["sessions"].sessions == {}  # the v1 snapshot was not trusted
    assert fresh.catch_up() == len(list(store.read_all()))
    assert encoded(fresh.states["sessions"]) == encoded(runner.states["sessions"])
    store.put_blob("snapshot/sessions", b"garbage")
    assert ProjectionRunner(store, [SessionsProjection()]).states["sessions"].sessions == {}


def test_runner_follows_the_log_in_background(store: EventStore) -> None:
    runner = ProjectionRunner(store, [ConversationProjection()]).start()
    try:
        recorded = store.append(session_stream("s9"), [new_event(RunRecorded(session_id="s9", run_id="r1", run={"content": "x"}))])
        assert runner.wait_for(_cursor_after(recorded[-1]), timeout=10)
        with runner.reading("conversation") as conv:
            assert [r.run_id for r in conv.sessions["s9"].runs] == ["r1"]
    finally:
        runner.stop()


def _cursor_after(event: Any) -> Any:
    from eventlog import Cursor

    return Cursor().advanced(event)


def test_fork_continues_from_an_earlier_turn(store: EventStore) -> None:
    marks = seed(store)
    new = fork_session(store, "s1", marks["run1"][0].id, new_session_id="s1-fork")
    assert new == "s1-fork"
    rows, conv = session_at(store, "s1-fork", store.last_position())
    assert [r.run_id for r in conv.sessions["s1-fork"].runs] == ["r1"]
    assert rows.sessions["s1-fork"].forked_from == "s1"
    assert rows.sessions["s1-fork"].user_id == "alice"
    forked = list(store.read(session_stream("s1-fork")))
    assert forked[0].type == "session.forked" and forked[0].payload.origin_version == 2  # type: ignore[union-attr]
    assert all(e.causation_id for e in forked)
    # the original is untouched and the fork id cannot be reused
    assert len(list(store.read(session_stream("s1")))) == 5
    with pytest.raises(Exception, match="already exists"):
        fork_session(store, "s1", marks["run1"][0].id, new_session_id="s1-fork")


def test_time_travel_by_time(store: EventStore) -> None:
    store.append(session_stream("t"), [new_event(SessionStarted(session_id="t", name="old"))])
    time.sleep(0.02)
    from datetime import datetime, timezone

    cut = datetime.now(timezone.utc)
    time.sleep(0.02)
    store.append(session_stream("t"), [new_event(SessionRenamed(session_id="t", name="new"))])
    assert state_at(store, SessionsProjection(), cut).sessions["t"].name == "old"
    assert state_at(store, SessionsProjection(), store.last_position()).sessions["t"].name == "new"


def test_unknown_events_pass_through_every_projection() -> None:
    store = MemoryStore()
    store.append("misc/x", [new_event(UnknownPayload(kind="new.kind", raw=b'{"type":"new.kind"}'))])
    for projection in all_projections():
        assert encoded(projection.fold(store.read_all())) == encoded(projection.initial())


def test_concurrent_readers_see_whole_events() -> None:
    store = MemoryStore()
    runner = ProjectionRunner(store, [WorkflowsProjection()]).start()
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set() and i < 300:
            i += 1
            store.append(workflow_stream("w", "s"), [new_event(WorkflowStepCompleted(workflow="w", session_id="s", step=i))])

    t = threading.Thread(target=write)
    t.start()
    try:
        for _ in range(200):
            with runner.reading("workflows") as wf:
                row = wf.workflows.get(workflow_key("w", "s"))
                if row is not None:
                    assert [s.step for s in row.steps] == list(range(1, len(row.steps) + 1))
    finally:
        stop.set()
        t.join()
        runner.stop()


def test_runs_are_kept_as_json_and_read_as_a_rebuild_would() -> None:
    """A run is kept as its JSON (`RunEntry.body`): applying the in-memory event (as the Agno
    adapter does for its own writes) gives the state a rebuild from the stored JSON gives, even
    for values JSON does not have (tuples, datetimes); and `run` is a fresh dict per read."""
    from datetime import datetime, timezone

    store = MemoryStore()
    run = {"content": ("a", "b"), "at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc), "n": 10**30,
           "nested": {"x": [1.5, None, True]}}
    applied = ProjectionRunner(store, [ConversationProjection()], use_snapshots=False)
    for event in store.append(session_stream("s1"), [new_event(RunRecorded(session_id="s1", run_id="r1", run=run))]):
        applied.apply(event)
    rebuilt = ProjectionRunner(store, [ConversationProjection()], use_snapshots=False)
    rebuilt.catch_up()
    assert encoded(applied.states["conversation"]) == encoded(rebuilt.states["conversation"])
    entry = rebuilt.states["conversation"].sessions["s1"].runs[0]
    expected = {"content": ["a", "b"], "at": "2025-01-02T03:04:05Z", "n": 10**30, "nested": {"x": [1.5, None, True]}}
    assert entry.run == expected
    entry.run["content"] = "changed"  # a copy: the read model is not changed through it
    assert entry.run == expected and entry.run is not entry.run


def test_epoch_is_int_timestamp() -> None:
    """`epoch` takes a cheaper path than `int(at.timestamp())` (and remembers its last answer):
    it must agree for aware and naive times, before and after 1970, on repeated calls."""
    import random
    from datetime import datetime, timedelta, timezone

    from projections.fold import epoch

    rnd = random.Random(3)
    for _ in range(2000):
        tz = rnd.choice([timezone.utc, timezone(timedelta(hours=rnd.randint(-12, 12))), None])
        at = (datetime(1970, 1, 1) + timedelta(microseconds=rnd.randint(-10**15, 10**17))).replace(tzinfo=tz)
        assert epoch(at) == int(at.timestamp()) == epoch(at), at


def test_a_memory_search_tests_the_memory_as_text_a_memory_of_none_holding_none() -> None:
    """`query_memories` (the memory facade) and the Agno adapter test the same text
    (`memory_text`): a memory stored as a dict is searched as its string form, and one stored
    as None holds no text (not the word "none")."""
    from projections.memories import MemoriesState, UserMemoriesProjection, memory_text

    state = UserMemoriesProjection().fold(
        [new_event(UserMemoryAdded(memory_id="m1", user_id="u", memory=None)),
         new_event(UserMemoryAdded(memory_id="m2", user_id="u", memory={"Likes": "None of it"}))],
        MemoriesState({}, {}))
    assert memory_text(state.memories["m1"]) == ""
    assert [r.memory_id for r in query_memories(state, search_content="NONE")[0]] == ["m2"]
