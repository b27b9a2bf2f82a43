"""Concurrent writers in one process: a lock per session, and appends folded as a group.

A write of one session excludes only other writes of that session (`KeyedLocks`), and the
indexer folds whatever concurrent writers have queued in one index transaction
(`Indexer.fold_appended`). These tests drive both through EventLogDb and AsyncEventLogDb on
real files and a real redis-server, and check the outcome against the log itself: every
read model equal to a fresh fold, nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from agno.db.base import SessionType
from agno.run.agent import RunOutput
from agno.run.base import RunStatus
from agno.session import AgentSession

from adapters.agno import AsyncEventLogDb, EventLogDb
from eventlog.aio_bridge import KeyedLocks, await_only, run_bridged
from projections.index.check import index_differences

LIMIT = 60  # seconds: a deadlock fails the test instead of hanging the run


def _session(sid: str, user: str = "u1") -> AgentSession:
    return AgentSession(session_id=sid, user_id=user, agent_id="a", session_data={"session_name": sid})


def _run(sid: str, i: int) -> RunOutput:
    return RunOutput(run_id=f"{sid}-r{i}", session_id=sid, agent_id="a", user_id="u1", content=f"turn {i}",
                     status=RunStatus.completed)


# --- KeyedLocks ------------------------------------------------------------------------------


def test_keyed_locks_exclude_one_key_not_others_and_forget_unused_keys() -> None:
    locks = KeyedLocks(object())
    inside: list[str] = []
    a_held, b_done = threading.Event(), threading.Event()
    release_a = threading.Event()

    def hold_a() -> None:
        with locks("a"):
            inside.append("a")
            a_held.set()
            release_a.wait(LIMIT)

    def write(key: str, done: threading.Event) -> None:
        with locks(key):
            inside.append(key)
        done.set()

    holder = threading.Thread(target=hold_a)
    holder.start()
    assert a_held.wait(LIMIT)
    other = threading.Thread(target=write, args=("b", b_done))
    other.start()
    assert b_done.wait(LIMIT), "a writer of another key waited for the held one"
    same_done = threading.Event()
    same = threading.Thread(target=write, args=("a", same_done))
    same.start()
    assert not same_done.wait(0.2), "a second writer of the held key got in"
    release_a.set()
    assert same_done.wait(LIMIT)
    for t in (holder, other, same):
        t.join(LIMIT)
    assert inside == ["a", "b", "a"]
    with locks("c"), locks("c"):  # reentrant for its holder
        pass
    gc.collect()
    assert len(locks) == 0  # nobody holds or waits: nothing kept per key ever seen


# --- the native async path (one event loop, many coroutines) --------------------------------


@pytest.mark.redis
def test_a_write_suspended_mid_append_does_not_hold_up_other_sessions(redis_url: str) -> None:
    """Session a's append is held at the store (awaiting an event the test sets) while session
    b is written: b's write completes meanwhile, and a's completes once released. With one
    db-wide write lock held across the awaited append, b would wait for a."""
    db = AsyncEventLogDb(redis_url)
    assert db.io == "redis.asyncio"
    store = db.sync.store
    original = store.append
    gate: dict[str, asyncio.Event] = {}

    def append(stream: str, events: list[Any], *args: Any, **kwargs: Any) -> Any:
        if stream == "session/a" and "a" in gate:
            await_only(gate["a"].wait())
        return original(stream, events, *args, **kwargs)

    store.append = append  # type: ignore[method-assign]

    async def main() -> list[str]:
        order: list[str] = []
        await db.upsert_session(_session("a"))
        await db.upsert_session(_session("b"))
        gate["a"] = asyncio.Event()

        async def write(sid: str) -> None:
            await db.upsert_run(_run(sid, 1), sid)
            order.append(sid)

        held = asyncio.create_task(write("a"))
        await asyncio.sleep(0.05)  # a is now inside its append, suspended
        await asyncio.wait_for(write("b"), 10)
        order.append("b finished while a was held")
        gate["a"].set()
        await asyncio.wait_for(held, 10)
        return order

    order = asyncio.run(asyncio.wait_for(main(), LIMIT))
    assert order == ["b", "b finished while a was held", "a"]
    fresh = EventLogDb(redis_url)
    for sid in ("a", "b"):
        got = fresh.get_session(sid, SessionType.AGENT)
        assert got is not None and [r.run_id for r in got.runs or []] == [f"{sid}-r1"]


@pytest.mark.redis
def test_concurrent_coroutines_fold_as_a_group_and_the_index_equals_the_log(redis_url: str) -> None:
    """32 coroutines on 8 sessions (4 writers each, interleaved): every run is in its session
    once, in the order its writes were appended; the index equals a fresh fold of the log; and
    far fewer index transactions were committed than appends were made (writers folded
    together)."""
    db = AsyncEventLogDb(redis_url)
    indexer = db.sync.indexer
    assert indexer is not None
    commits: list[int] = []
    original = indexer._commit

    def counted(partition: int, events: list[Any]) -> bool:
        commits.append(len(events))
        return original(partition, events)

    indexer._commit = counted  # type: ignore[method-assign]
    sessions = [f"s{i}" for i in range(8)]

    async def main() -> None:
        await asyncio.gather(*(db.upsert_session(_session(sid)) for sid in sessions))
        commits.clear()

        async def writer(sid: str, w: int) -> None:
            for i in range(5):
                await db.upsert_run(_run(sid, w * 10 + i), sid)

        await asyncio.gather(*(writer(sid, w) for sid in sessions for w in range(4)))

    asyncio.run(asyncio.wait_for(main(), LIMIT))
    appends = 8 * 4 * 5
    assert sum(commits) == appends  # each event folded once, by one writer or another
    # One transaction per append without grouping (measured: 138 for 160 appends, the rest
    # from catching up from the log); grouped, about a third (47).
    assert len(commits) < appends * 3 // 4, f"{len(commits)} index transactions for {appends} appends"
    fresh = EventLogDb(redis_url)
    for sid in sessions:
        logged = [e.payload.run_id for e in fresh.store.read(f"session/{sid}") if hasattr(e.payload, "run_id")]
        got = fresh.get_session(sid, SessionType.AGENT)
        assert got is not None and [r.run_id for r in got.runs or []] == logged and len(logged) == 20
    assert index_differences(fresh.store, fresh.indexer.index) == []  # type: ignore[union-attr]


@pytest.mark.redis
def test_a_session_and_a_whole_db_operation_at_once_keep_the_session_intact(redis_url: str) -> None:
    """delete_run (db-wide lock, then the run's session) and reassign_session_owner run while
    the same session's runs are being written: the lock order (db-wide before a session's)
    means no deadlock, and each run is recorded or deleted exactly as the log says."""
    db = AsyncEventLogDb(redis_url)

    async def main() -> None:
        await db.upsert_session(_session("x"))
        await asyncio.gather(*(db.upsert_run(_run("x", i), "x") for i in range(10)))
        await asyncio.gather(
            *(db.upsert_run(_run("x", i), "x") for i in range(10, 20)),
            *(db.delete_run(f"x-r{i}") for i in range(0, 10, 2)),
            db.reassign_session_owner("x", previous_user_id="u1", user_id="u2"),
        )

    asyncio.run(asyncio.wait_for(main(), LIMIT))
    fresh = EventLogDb(redis_url)
    got = fresh.get_session("x", SessionType.AGENT)
    assert got is not None
    runs = [r.run_id for r in got.runs or []]
    assert sorted(runs) == sorted([f"x-r{i}" for i in range(1, 10, 2)] + [f"x-r{i}" for i in range(10, 20)])
    deleted = Counter(type(e.payload).__name__ for e in fresh.store.read("session/x"))["RunDeleted"]
    assert deleted == 5
    assert got.user_id == "u2"  # (no run was pending: the owner changed, between whichever writes)


# --- threads on the sync db ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_threads_writing_their_own_and_a_shared_session(kind: str, tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    url = str(tmp_path / "log") if kind == "file" else request.getfixturevalue("redis_url")
    db = EventLogDb(url)
    db.upsert_session(_session("shared"))
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            own = f"t{t}"
            db.upsert_session(_session(own))
            for i in range(15):
                db.upsert_run(_run(own, i), own)
                db.upsert_run(_run("shared", t * 100 + i), "shared")
        except BaseException as exc:  # (reported below: a thread's failure must fail the test)
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(LIMIT)
    assert not errors, errors
    ref = EventLogDb(url, shared_index=False) if kind == "file" else EventLogDb(store=db.store, shared_index=False)
    for sid in ["shared"] + [f"t{t}" for t in range(6)]:
        ours = db.get_session(sid, SessionType.AGENT, deserialize=False)
        theirs = ref.get_session(sid, SessionType.AGENT, deserialize=False)
        assert ours == theirs
        assert len(ours["runs"]) == (90 if sid == "shared" else 15)  # type: ignore[index]
    assert index_differences(db.store, db.indexer.index) == []  # type: ignore[union-attr]


@pytest.mark.redis
def test_the_bridge_runs_two_sessions_writes_interleaved(redis_url: str) -> None:
    """run_bridged writers of two sessions interleave their awaits (each yields to the other
    inside its write) rather than running one after the other."""
    db = AsyncEventLogDb(redis_url)
    trace: list[str] = []

    def write(sid: str) -> None:
        with db.sync._session_lock(sid):
            trace.append(f"{sid} in")
            await_only(asyncio.sleep(0.02))
            trace.append(f"{sid} out")

    async def main() -> None:
        await asyncio.gather(run_bridged(write, "a"), run_bridged(write, "b"))

    asyncio.run(asyncio.wait_for(main(), LIMIT))
    assert trace[:2] == ["a in", "b in"], trace


# --- readers while this process folds -------------------------------------------------------


def test_broadcast_wakes_every_waiter_threads_and_coroutines_alike() -> None:
    from eventlog.aio_bridge import Broadcast

    signal = Broadcast()
    woke: list[str] = []

    def thread_waiter(name: str) -> None:
        signal.wait_past(0, LIMIT)
        woke.append(name)

    threads = [threading.Thread(target=thread_waiter, args=(f"t{i}",)) for i in range(3)]
    for t in threads:
        t.start()

    async def main() -> None:
        def bridged(name: str) -> None:
            signal.wait_past(0, LIMIT)
            woke.append(name)

        waiters = [asyncio.ensure_future(run_bridged(bridged, f"c{i}")) for i in range(3)]
        await asyncio.sleep(0.1)
        assert woke == []  # nobody passes before the bump
        signal.bump()
        await asyncio.gather(*waiters)

    asyncio.run(asyncio.wait_for(main(), LIMIT))
    for t in threads:
        t.join(LIMIT)
    assert sorted(woke) == ["c0", "c1", "c2", "t0", "t1", "t2"]
    signal.wait_past(0, LIMIT)  # already past: returns at once


@pytest.mark.redis
def test_readers_during_concurrent_writes_see_every_completed_write(redis_url: str) -> None:
    """Coroutines read while others write (readers wait for this process's fold in progress,
    not in the lock's queue): a write that completed before a read began is in that read,
    and another process's write is seen within one read."""
    db = AsyncEventLogDb(redis_url)
    other = EventLogDb(redis_url)  # another "process": its own store and indexer

    async def main() -> None:
        await db.upsert_session(_session("w"))
        done: list[str] = []

        async def writer(w: int) -> None:
            for i in range(6):
                run = _run("w", w * 10 + i)
                await db.upsert_run(run, "w")
                done.append(run.run_id)

        async def reader() -> None:
            for _ in range(12):
                before = list(done)
                got = await db.get_session("w", SessionType.AGENT)
                assert got is not None
                assert set(before) <= {r.run_id for r in got.runs or []}
                await asyncio.sleep(0)

        await asyncio.gather(*(writer(w) for w in range(4)), *(reader() for _ in range(4)))
        other.upsert_run(_run("w", 999), "w")  # appended elsewhere: seen by the next read here
        got = await db.get_session("w", SessionType.AGENT)
        assert got is not None and "w-r999" in {r.run_id for r in got.runs or []}

    asyncio.run(asyncio.wait_for(main(), LIMIT))
