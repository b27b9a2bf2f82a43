"""Redis with the file behind it (`REDIS_URL`): reads come from the shared Redis index while
Redis answers — no process folds the log — and while Redis is away from a fold of the
process's recent sessions and the pending events; back on the index once they are replayed.
Real redis-server, killed and restarted (its AOF keeps the log)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from agno.agent import Agent
from agno.db.base import SessionType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.agno import EventLogDb, OfflineModel
from eventlog import (
    Actor,
    MessageAppended,
    RunDeleted,
    RunRecorded,
    SessionStarted,
    SessionStateChanged,
    UserMemoryAdded,
    new_event,
    open_store,
)
from eventlog.fallback import FallbackStore
from eventlog.jsonl import JsonlStore
from eventlog.names import session_stream, user_stream
from eventlog.redis_store import RedisStreamStore
from eventlog.store import Cursor
from projections import ProjectionRunner, all_projections
from projections.index.check import index_differences
from projections.index.redis import RedisIndex
from tests.redis_server import RedisServer

_examples = itertools.count()


def _db(url: str, fallback: Path, **kw: object) -> EventLogDb:
    store = FallbackStore(RedisStreamStore.from_url(url), JsonlStore(fallback), health_interval=0.1, **kw)  # type: ignore[arg-type]
    db = EventLogDb(store=store)
    db._owns_store = True
    return db


def _inputs(db: EventLogDb, session_id: str) -> list[str]:
    session = db.get_session(session_id, SessionType.AGENT)
    assert session is not None
    return [r.input.input_content for r in session.runs or []]  # type: ignore[union-attr]


def _wait(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def _index_matches_a_fresh_fold(url: str) -> None:
    primary = RedisStreamStore.from_url(url)
    index = RedisIndex(primary)
    try:
        assert index_differences(primary, index) == []
    finally:
        index.close()
        primary.close()


def test_reads_come_from_the_shared_index_and_no_process_folds_the_log(redis_url: str, tmp_path: Path) -> None:
    url = f"{redis_url}?prefix=fbr1"
    writer = _db(url, tmp_path / "a")
    agent = Agent(model=OfflineModel(), db=writer, user_id="u1", session_id="s1")
    for text in ("one", "two", "three"):
        agent.run(text)
    # another process on another host (its own fallback directory) sees it through the index
    reader = _db(url, tmp_path / "b")
    assert reader._fallback is not None and not reader._fallback.degraded
    assert reader.runner.projections == {}  # nothing of the log folded into the process
    assert _inputs(reader, "s1") == ["one", "two", "three"]
    page, total = reader.get_sessions(session_type=SessionType.AGENT, limit=20, page=1, sort_by="updated_at",
                                      deserialize=False)  # type: ignore[misc]
    assert total == 1 and [s["session_id"] for s in page] == ["s1"]
    # ... and the rows are the index's: what is in Redis beside the log
    index = RedisIndex(RedisStreamStore.from_url(url))
    assert index.get("session", "s1", index.partition_of("session/s1")) is not None
    agent.run("four")  # read-your-writes in the writer; the reader within one read
    assert _inputs(reader, "s1")[-1] == "four"
    _index_matches_a_fresh_fold(url)
    writer.close()
    reader.close()


def test_an_outage_keeps_the_current_session_and_the_sync_brings_the_index_back(
        killable_redis: RedisServer, tmp_path: Path) -> None:
    db = _db(killable_redis.url, tmp_path / "fb")
    agent = Agent(model=OfflineModel(), db=db, user_id="u1", session_id="s1", add_history_to_context=True)
    agent.run("before 1")
    agent.run("before 2")
    # written after the session's last read: kept with the session for an outage
    Agent(model=OfflineModel(), db=db, user_id="u1", session_id="s2").run("other session")
    killable_redis.kill()
    agent.run("during 1")  # the append goes to the file; the read before it found Redis away
    agent.run("during 2")
    assert db._fallback is not None and db._fallback.degraded
    assert _inputs(db, "s1") == ["before 1", "before 2", "during 1", "during 2"]
    assert _inputs(db, "s2") == ["other session"]
    # a process started during the outage has what the file holds
    fresh = _db(killable_redis.url, tmp_path / "fb")
    assert fresh._fallback is not None and fresh._fallback.degraded
    assert _inputs(fresh, "s1") == ["during 1", "during 2"]
    fresh.close()
    killable_redis.start()
    _wait(lambda: db.store.pending() == 0 and not db.store.unreachable)  # the health thread replays the file
    assert _inputs(db, "s1") == ["before 1", "before 2", "during 1", "during 2"]
    assert not db._fallback.degraded  # back on the index
    agent.run("after")
    assert _inputs(db, "s1")[-1] == "after"
    plain = EventLogDb(killable_redis.url)  # a redis:// reader of the same index
    assert _inputs(plain, "s1") == ["before 1", "before 2", "during 1", "during 2", "after"]
    plain.close()
    _index_matches_a_fresh_fold(killable_redis.url)
    db.close()


def test_redis_away_at_open_then_back(killable_redis: RedisServer, tmp_path: Path) -> None:
    first = _db(killable_redis.url, tmp_path / "fb")
    Agent(model=OfflineModel(), db=first, user_id="u1", session_id="s1").run("stored in redis")
    first.close()
    killable_redis.kill()
    db = _db(killable_redis.url, tmp_path / "fb")  # opens: no error, reads what it can
    assert db._fallback is not None and db._fallback.degraded
    agent = Agent(model=OfflineModel(), db=db, user_id="u1", session_id="s1")
    agent.run("pending")
    assert _inputs(db, "s1") == ["pending"]
    killable_redis.start()
    _wait(lambda: db.store.pending() == 0 and not db.store.unreachable)  # (its health thread, or the other's)
    assert _inputs(db, "s1") == ["stored in redis", "pending"]
    assert not db._fallback.degraded
    _index_matches_a_fresh_fold(killable_redis.url)
    db.close()


def test_events_pending_from_another_process_are_replayed_before_a_read(redis_url: str, tmp_path: Path) -> None:
    """Redis answers, but another process on this machine left events in the file (it was
    cut off): a read replays them first, so they are in the index and in the answer."""
    url = f"{redis_url}?prefix=fbr4"
    fb = tmp_path / "fb"
    db = EventLogDb(store=open_store(url, fallback=str(fb)))
    Agent(model=OfflineModel(), db=db, user_id="u1", session_id="s1").run("in redis")
    side = JsonlStore(fb)  # what the other process's FallbackStore wrote while Redis was away for it
    side.append("session/s9", [new_event(SessionStarted(session_id="s9", user_id="u1")),
                               new_event(RunRecorded(session_id="s9", run_id="r1", run={"run_id": "r1"}))])
    side.close()
    assert db.store.pending() == 2  # type: ignore[attr-defined]
    sessions = db.get_sessions(session_type=SessionType.AGENT, user_id="u1")
    assert sorted(s.session_id for s in sessions) == ["s1", "s9"]  # type: ignore[union-attr]
    assert db.store.pending() == 0  # type: ignore[attr-defined]
    assert not db._fallback.degraded  # type: ignore[union-attr]
    _index_matches_a_fresh_fold(url)
    db.close()


# --- hypothesis: random logs through an outage -------------------------------------------------

_SIDS = ["s1", "s2", "s3"]


def _ops() -> st.SearchStrategy[list[tuple[str, Any]]]:
    sid = st.sampled_from(_SIDS)
    user = st.sampled_from(["alice", "bob"])
    op = st.one_of(
        st.builds(lambda s, u: (session_stream(s), SessionStarted(session_id=s, user_id=u, created_at=1000)), sid, user),
        st.builds(lambda s, r: (session_stream(s), RunRecorded(session_id=s, run_id=f"r{r}", run={"run_id": f"r{r}"})),
                  sid, st.integers(0, 5)),
        st.builds(lambda s, r: (session_stream(s), RunDeleted(session_id=s, run_id=f"r{r}")), sid, st.integers(0, 5)),
        st.builds(lambda s, t: (session_stream(s), SessionStateChanged(session_id=s, set={"k": t})), sid,
                  st.integers(0, 9)),
        st.builds(lambda s, t: (session_stream(s), MessageAppended(session_id=s, role="user", content=t)), sid,
                  st.integers(0, 9)),
        st.builds(lambda m, u: (user_stream(u), UserMemoryAdded(memory_id=m, user_id=u, memory=m)),
                  st.sampled_from(["m1", "m2"]), user),
    )
    return st.lists(op, min_size=1, max_size=14)


def _fold(store: Any) -> dict[str, Any]:
    runner = ProjectionRunner(store, all_projections(), use_snapshots=False)
    runner.catch_up()
    return runner.states


def _seen(states: Any, sid: str) -> tuple[Any, Any]:
    row = states["sessions"].sessions.get(sid)
    conv = states["conversation"].sessions.get(sid)
    return ((row.state, row.user_id) if row is not None else None,
            ([(r.run_id, r.body) for r in conv.runs], [m.content for m in conv.messages]) if conv is not None else None)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=_ops(), during=_ops(), after=_ops(), read=st.lists(st.sampled_from(_SIDS), max_size=3))
def test_reads_through_an_outage_and_the_sync_equal_a_fold_of_the_log(
        killable_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory, before: list[tuple[str, Any]],
        during: list[tuple[str, Any]], after: list[tuple[str, Any]], read: list[str]) -> None:
    """Whatever is written before, during and after an outage: while Redis is away, a session
    the process read just before it shows that read plus everything written since (its own
    writes folded on top, then the pending events); once Redis is back and the file is
    replayed, every read model is the fold of Redis's log, each event once — in this process,
    in the index, and for a new `redis://` reader."""
    if killable_redis.proc is None or killable_redis.proc.poll() is not None:
        killable_redis.start()
    url = f"{killable_redis.url}?prefix=h{next(_examples)}"
    db = _db(url, tmp_path_factory.mktemp("fb"), auto_sync=False)
    actor = Actor(agent_id="a")
    for stream, payload in before[: len(before) // 2]:
        db._emit(stream, [payload], actor)
    at_read = _fold(RedisStreamStore.from_url(url))["sessions"].sessions.keys()
    for sid in read:  # what the process last read of these sessions, before its last writes
        with db._reading() as states:
            states["sessions"].sessions.get(sid)
            states["conversation"].sessions.get(sid)
    for stream, payload in before[len(before) // 2:]:
        db._emit(stream, [payload], actor)
    truth_before = _fold(RedisStreamStore.from_url(url))
    killable_redis.kill()
    for stream, payload in during:
        db._emit(stream, [payload], actor)
    assert db._fallback is not None and db._fallback.degraded
    with db._reading() as states:
        pending = ProjectionRunner(db.store.secondary, all_projections(), use_snapshots=False)  # type: ignore[attr-defined]
        # the read before the outage, the process's writes since, the pending events (one
        # fold: seeding it again would fold the pending events twice into the same states)
        expected = ProjectionRunner(db.store.secondary, all_projections(), use_snapshots=False)  # type: ignore[attr-defined]
        expected.seed({"sessions": truth_before["sessions"], "conversation": truth_before["conversation"]}, Cursor())
        expected.catch_up()
        for sid in _SIDS:
            if sid in read and sid in at_read:
                assert _seen(states, sid) == _seen(expected.states, sid), sid
        pending.catch_up()
        for sid in _SIDS:  # what the outage wrote is there, whatever the process read before
            if not (sid in read and sid in at_read) and sid not in truth_before["sessions"].sessions:
                assert _seen(states, sid) == _seen(pending.states, sid), sid
    killable_redis.start()
    assert db.store.sync().complete  # type: ignore[attr-defined]
    for stream, payload in after:
        db._emit(stream, [payload], actor)
    db._catch_up()
    assert not db._fallback.degraded
    primary = RedisStreamStore.from_url(url)
    truth = _fold(primary)
    with db._reading() as states:
        for sid in _SIDS:
            assert _seen(states, sid) == _seen(truth, sid), sid
        assert {m: r.memory for m, r in truth["memories"].memories.items()} == {
            m: states["memories"].memories.get(m).memory for m in truth["memories"].memories}
    plain = EventLogDb(url)
    with plain._reading() as states:
        for sid in _SIDS:
            assert _seen(states, sid) == _seen(truth, sid), sid
    plain.close()
    _index_matches_a_fresh_fold(url)
    primary.close()
    db.close()


def test_the_cli_checks_and_rebuilds_the_index_of_a_redis_url_log(redis_url: str, tmp_path: Path) -> None:
    """`eventlog reindex [--check]` with REDIS_URL works on the Redis log's index (before, a
    fallback store had none: 'nothing to reindex')."""
    from tests.test_cli import as_json, eventlog

    url = f"{redis_url}?prefix=fbr6"
    db = _db(url, tmp_path / "mem" / "fallback")
    Agent(model=OfflineModel(), db=db, user_id="u1", session_id="s1").run("hello")
    db.close()
    env = {"REDIS_URL": url, "MEMORY_DIR": str(tmp_path / "mem")}
    assert as_json(eventlog("reindex", "--check", "--json", env=env))["ok"] is True
    rebuilt = as_json(eventlog("reindex", "--json", env=env))
    assert rebuilt["events"] > 0 and "rm" in rebuilt["index"]
    assert _inputs(EventLogDb(url), "s1") == ["hello"]


def test_what_an_outage_carries_on_with_is_bounded_by_the_conversation_cache(
        killable_redis: RedisServer, tmp_path: Path) -> None:
    """The recent sessions hold no conversation of their own: a session whose conversation
    the cache (`cache_mb`) has dropped is not seeded — never a row without its runs."""
    store = FallbackStore(RedisStreamStore.from_url(killable_redis.url), JsonlStore(tmp_path / "fb"),
                          health_interval=0.1)
    db = EventLogDb(store=store, cache_mb=1)
    db._owns_store = True
    big = "x" * 400_000
    for sid in ("old", "new"):
        for i in range(2):
            db._emit(session_stream(sid), [RunRecorded(session_id=sid, run_id=f"{sid}{i}", run={"run_id": f"{sid}{i}",
                                                                                              "content": big})],
                     Actor(agent_id="a", session_id=sid))
    for sid in ("old", "new"):  # each read: "new" pushes "old" out of the 1 MiB cache
        with db._reading() as states:
            row = states["sessions"].sessions.get(sid)
            assert len(db._conversation_of(states, row).runs) == 2  # type: ignore[union-attr]
    assert db._fallback is not None and db._fallback.states.conversations.peek("old") == (False, None)
    killable_redis.kill()
    db._emit("session/other", [SessionStarted(session_id="other")], Actor(agent_id="a"))  # (falls back)
    assert db._fallback.degraded
    with db._reading() as states:
        assert states["sessions"].sessions.get("old") is None
        assert [r.run_id for r in states["conversation"].sessions["new"].runs] == ["new0", "new1"]
    db.close()


def test_the_memory_facade_on_redis_url_reads_the_shared_index(redis_url: str, tmp_path: Path) -> None:
    """The original design's facade with `redis_url` (Redis + file fallback): two managers on
    two hosts share what one remembers, through the index, folding nothing themselves."""
    from adapters.memory_manager import get_memory_manager

    url = f"{redis_url}?prefix=fbr8"
    one = get_memory_manager({"redis_url": url, "memory_dir": str(tmp_path / "one")})
    one.user_memory.remember("editor", "vim", category="tools")
    other = get_memory_manager({"redis_url": url, "memory_dir": str(tmp_path / "other")})
    assert other._fallback is not None and not other._fallback.degraded
    assert other.runner.projections == {}
    assert other.user_memory.recall("editor") == "vim"
    one.user_memory.remember("editor", "emacs", category="tools")
    assert other.user_memory.recall("editor") == "emacs"  # another's write, within one read
    one.close()
    other.close()


def test_get_session_catches_up_and_reads_in_one_go_and_an_outage_at_that_read_is_answered(
        killable_redis: RedisServer, tmp_path: Path) -> None:
    """`get_session` over the fallback looks at the log's end with its row (one round trip,
    as on `redis://`): another writer's raw appends (no index update), events another process
    left in the file, and a run written through another db are all in the very next read; and
    when Redis is killed just before such a read, that read is still answered — from the
    process's own fold, with its current session — rather than raising."""
    url = killable_redis.url
    db = _db(url, tmp_path / "fb")
    raw = RedisStreamStore.from_url(url)  # (a log writer with no index: a writer killed before its update)
    try:
        assert db.get_session("s1", SessionType.AGENT) is None
        raw.append(session_stream("s1"), [new_event(SessionStarted(session_id="s1", user_id="u1",
                                                                   session_type="agent", agent_id="a"))])
        raw.append(session_stream("s1"), [new_event(RunRecorded(session_id="s1", run_id="r1",
                                                                 run={"run_id": "r1", "agent_id": "a"}))])
        got = db.get_session("s1", SessionType.AGENT)
        assert got is not None and got.user_id == "u1" and [r.run_id for r in got.runs or []] == ["r1"]
        side = JsonlStore(tmp_path / "fb")  # what another process's fallback left in the file
        side.append(session_stream("s1"), [new_event(RunRecorded(session_id="s1", run_id="r2",
                                                                 run={"run_id": "r2", "agent_id": "a"}))])
        side.close()
        got = db.get_session("s1", SessionType.AGENT)
        assert got is not None and [r.run_id for r in got.runs or []] == ["r1", "r2"]
        assert db.store.pending() == 0  # type: ignore[attr-defined]
        other = EventLogDb(url)
        try:
            agent = Agent(model=OfflineModel(), db=other, user_id="u1", session_id="s1")
            agent.run("from another worker")
        finally:
            other.close()
        got = db.get_session("s1", SessionType.AGENT)
        assert got is not None and len(got.runs or []) == 3
        assert got.runs[-1].input.input_content == "from another worker"  # type: ignore[index, union-attr]
        assert db._fallback is not None and not db._fallback.degraded
        killable_redis.kill()
        assert not db.store.unreachable  # (nothing has noticed yet: the combined read is the first)
        got = db.get_session("s1", SessionType.AGENT)
        assert got is not None and [r.run_id for r in got.runs or []][:2] == ["r1", "r2"]
        assert len(got.runs or []) == 3 and db._fallback.degraded
    finally:
        raw.close()
        db.close()
