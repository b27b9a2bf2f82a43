"""Redis vanishing mid-write: appends continue into the file store, and after Redis returns
every acknowledged event is in Redis exactly once, in per-stream order."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from eventlog import MessageAppended, new_event, open_store
from eventlog.fallback import FallbackStore
from eventlog.jsonl import JsonlStore
from eventlog.redis_store import RedisStreamStore
from tests.redis_server import RedisServer


def msg(text: str, session: str):  # type: ignore[no-untyped-def]
    return new_event(MessageAppended(session_id=session, role="user", content=text))


def _check_exactly_once(server: RedisServer, acknowledged: list[str]) -> None:
    primary = RedisStreamStore.from_url(server.url)
    ids = [e.id for e in primary.read_all()]
    counts = Counter(ids)
    assert set(acknowledged) <= set(ids), f"{len(set(acknowledged) - set(ids))} acknowledged events lost"
    assert max(counts.values()) == 1, "an event was stored twice"
    for stream in primary.streams("session/"):
        chain = list(primary.read(stream))
        assert [e.version for e in chain] == list(range(1, len(chain) + 1))
        assert all(b.prev_hash == a.hash for a, b in zip(chain, chain[1:]))
    assert primary.verify().ok
    primary.close()


def test_kill_9_mid_appends_then_restart_and_sync(killable_redis: RedisServer, tmp_path: Path) -> None:
    store = open_store(killable_redis.url, fallback=str(tmp_path / "fallback"))
    assert isinstance(store, FallbackStore)
    store._stop.set()  # drive sync by hand in this test
    acknowledged: list[str] = []
    for i in range(2000):
        if i == 700:
            killable_redis.kill()
        if i == 1400:
            killable_redis.start()
        recorded = store.append(f"session/s{i % 5}", [msg(str(i), f"s{i % 5}")])
        acknowledged.append(recorded[0].id)
    assert store.pending() > 0
    summary = store.sync()
    assert summary.complete and summary.replayed + summary.already_present >= 1
    assert store.pending() == 0 and not store.degraded
    _check_exactly_once(killable_redis, acknowledged)
    # per-stream order: the contents of each stream are in append order
    primary = RedisStreamStore.from_url(killable_redis.url)
    for s in range(5):
        contents = [int(e.payload.content) for e in primary.read(f"session/s{s}")]  # type: ignore[union-attr]
        assert contents == sorted(contents) and len(contents) == 400
    store.close()


def test_interrupted_sync_rerun_doubles_nothing(killable_redis: RedisServer, tmp_path: Path) -> None:
    killable_redis.kill()
    store = FallbackStore(RedisStreamStore.from_url(killable_redis.url), JsonlStore(tmp_path / "fb"), auto_sync=False)
    acknowledged = [store.append(f"session/x{i % 3}", [msg(str(i), f"x{i % 3}")])[0].id for i in range(1200)]
    killable_redis.start()

    def stop_midway(done: int, total: int) -> None:
        if done >= total // 2:
            raise KeyboardInterrupt("user pressed Ctrl-C")

    with pytest.raises(KeyboardInterrupt):
        store.sync(progress=stop_midway)
    assert 0 < store.pending() < 1200
    # a crash that lost the checkpoint: the rerun replays everything again, ids dedupe it
    (tmp_path / "fb" / "sync.checkpoint").unlink()
    again = FallbackStore(RedisStreamStore.from_url(killable_redis.url), JsonlStore(tmp_path / "fb"), auto_sync=False)
    summary = again.sync()
    assert summary.already_present >= 1 and summary.replayed + summary.already_present == 1200
    _check_exactly_once(killable_redis, acknowledged)
    store.close()
    again.close()


def test_redis_down_at_open_then_health_check_syncs(killable_redis: RedisServer, tmp_path: Path) -> None:
    killable_redis.kill()
    store = open_store(killable_redis.url, fallback=str(tmp_path / "fb"))
    assert isinstance(store, FallbackStore)
    store._health_interval = 0.2
    ids = [store.append("session/late", [msg(str(i), "late")])[0].id for i in range(50)]
    assert store.degraded
    assert [e.id for e in store.read("session/late")] == ids  # reads while degraded: the file
    killable_redis.start()
    deadline = time.monotonic() + 20
    while store.pending() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert store.pending() == 0
    _check_exactly_once(killable_redis, ids)
    store.close()


def _run(i: int, session: str):  # type: ignore[no-untyped-def]
    from eventlog import Actor, RunRecorded

    return new_event(RunRecorded(session_id=session, run_id=f"r{i}", run={"i": i}),
                     actor=Actor(agent_id="a", user_id="u", session_id=session))


@pytest.mark.parametrize("follow", [False, True])
def test_read_models_count_each_event_once_through_an_outage_and_the_sync(
        killable_redis: RedisServer, tmp_path: Path, follow: bool) -> None:
    """Read models folded while Redis is away see each pending event once (not again on every
    catch-up), and after the sync — which renumbers those events in Redis — the runner knows
    their Redis copies by id: nothing counted twice, nothing missed, no refold."""
    import msgspec

    from eventlog.fallback import PENDING_PARTITION
    from projections import ProjectionRunner, all_projections

    store = FallbackStore(RedisStreamStore.from_url(killable_redis.url), JsonlStore(tmp_path / "fb"), auto_sync=False)
    runner = ProjectionRunner(store, all_projections(), use_snapshots=False)
    if follow:
        runner.start()
    for i in range(5):
        store.append("session/s1", [_run(i, "s1")])
    runner.catch_up()
    killable_redis.kill()
    for i in range(5, 12):
        store.append("session/s1", [_run(i, "s1")])
        runner.catch_up()  # each pending event folded once, however often we look
        assert runner.states["actors"].actors["agent:a"].events == i + 1
    assert store.degraded
    assert runner.cursor.get(PENDING_PARTITION) > 0
    killable_redis.start()
    assert store.sync().replayed == 7
    store.append("session/s1", [_run(12, "s1")])
    runner.catch_up()
    if follow:
        assert runner.wait_for(store.last_position())
    primary = RedisStreamStore.from_url(killable_redis.url)
    fresh = ProjectionRunner(primary, all_projections(), use_snapshots=False)
    fresh.catch_up()
    with runner.reading_all() as states:
        # What the read models say equals a fresh fold of Redis's log: the same runs with the
        # same bodies, each counted once. (Runs folded while pending keep the file's
        # provisional versions and event positions until the next rebuild.)
        for name in ("actors", "memories", "workflows", "records"):
            assert msgspec.msgpack.encode(states[name]) == msgspec.msgpack.encode(fresh.states[name]), name
        ours, theirs = states["conversation"].sessions["s1"], fresh.states["conversation"].sessions["s1"]
        assert [(r.run_id, r.body, r.event_id) for r in ours.runs] == [(r.run_id, r.body, r.event_id) for r in theirs.runs]
        assert states["sessions"].sessions.keys() == fresh.states["sessions"].sessions.keys()
        assert states["actors"].actors["agent:a"].events == 13
        assert [r.run_id for r in states["conversation"].sessions["s1"].runs] == [f"r{i}" for i in range(13)]
        assert states["conversation"].sessions["s1"].rewrites == 0
    runner.stop()
    primary.close()
    store.close()


def _counts(runner):  # type: ignore[no-untyped-def]
    with runner.reading_all() as states:
        actor = states["actors"].actors.get("agent:a")
        conv = states["conversation"].sessions.get("s1")
        return (actor.events if actor else 0), (len(conv.runs) if conv else 0)


def test_snapshots_are_not_taken_of_pending_events_and_a_restart_counts_once(
        killable_redis: RedisServer, tmp_path: Path) -> None:
    """A snapshot saved while events are pending would count them again once they are read
    back from Redis: none is saved then (and one naming the pending partition is never
    loaded); snapshots taken before or after the outage are used as usual."""
    import msgspec

    from projections import ProjectionRunner, all_projections

    def fallback() -> FallbackStore:
        return FallbackStore(RedisStreamStore.from_url(killable_redis.url), JsonlStore(tmp_path / "fb"), auto_sync=False)

    store = fallback()
    runner = ProjectionRunner(store, all_projections())
    for i in range(3):
        store.append("session/s1", [_run(i, "s1")])
    runner.catch_up()
    runner.save_snapshots()  # before the outage: a good one, kept
    killable_redis.kill()
    for i in range(3, 6):
        store.append("session/s1", [_run(i, "s1")])
    runner.catch_up()
    assert _counts(runner) == (6, 6)
    runner.save_snapshots()  # provisional: not saved (it would go to the file store)
    killable_redis.start()
    runner.save_snapshots()  # Redis reachable, events still pending: not saved either
    assert store.sync().replayed == 3
    runner.catch_up()
    assert _counts(runner) == (6, 6)
    assert runner.cursor.offsets.keys() == {0}  # nothing outstanding: the cursor is Redis's again
    runner.save_snapshots()
    from eventlog import Cursor
    from projections.runner import Snapshot

    snap = msgspec.msgpack.decode(store.get_blob("snapshot/actors") or b"", type=Snapshot)
    assert Cursor.of(snap.cursor) == Cursor({0: 6})  # saved again, after the outage
    store.close()
    again = fallback()
    restarted = ProjectionRunner(again, all_projections())
    restarted.catch_up()
    assert _counts(restarted) == (6, 6)
    again.close()


def test_another_processes_sync_is_noticed(killable_redis: RedisServer, tmp_path: Path) -> None:
    """Two stores over one file store (two processes): when B syncs A's pending events, A
    takes up B's checkpoint, and A's read models know Redis's copies by id instead of
    counting them on top."""
    from projections import ProjectionRunner, all_projections

    killable_redis.kill()
    a = FallbackStore(RedisStreamStore.from_url(killable_redis.url), JsonlStore(tmp_path / "fb"), auto_sync=False)
    runner = ProjectionRunner(a, all_projections(), use_snapshots=False)
    for i in range(3):
        a.append("session/s1", [_run(i, "s1")])
    runner.catch_up()
    assert _counts(runner) == (3, 3)
    killable_redis.start()
    b = FallbackStore(RedisStreamStore.from_url(killable_redis.url), JsonlStore(tmp_path / "fb"), auto_sync=False)
    assert b.sync().replayed == 3
    assert a.pending() == 0  # A takes up B's checkpoint
    runner.catch_up()
    assert _counts(runner) == (3, 3)
    assert a.sync().replayed == 0  # A knows they are synced
    a.append("session/s1", [_run(3, "s1")])
    runner.catch_up()
    assert _counts(runner) == (4, 4)
    a.close()
    b.close()


def test_positions_of_pending_events_agree_everywhere(killable_redis: RedisServer, tmp_path: Path) -> None:
    """While degraded, a pending event's position is the same whether found through read_all,
    a stream read or last_position: time travel to it works, tail from the end yields nothing
    old, verify passes; and a view folded to a point stays there across a sync."""
    from eventlog import Cursor
    from eventlog.fallback import PENDING_PARTITION
    from projections import ProjectionRunner, all_projections, session_at
    from projections.timetravel import cursor_of_event

    store = FallbackStore(RedisStreamStore.from_url(killable_redis.url), JsonlStore(tmp_path / "fb"), auto_sync=False)
    for i in range(3):
        store.append("session/s1", [_run(i, "s1")])
    killable_redis.kill()
    pending = [store.append("session/s1", [_run(i, "s1")])[0] for i in range(3, 6)]
    view = ProjectionRunner(store, all_projections(), use_snapshots=False)
    for event in list(store.read_all())[:2]:  # (Redis away: what the file holds)
        view.apply(event)
    read_back = {e.id: e for e in store.read("session/s1")}[pending[1].id]
    assert read_back.partition == PENDING_PARTITION
    assert cursor_of_event(store, pending[1].id) == Cursor({PENDING_PARTITION: read_back.position})
    assert store.last_position().get(PENDING_PARTITION) == read_back.position + 1
    _, conv = session_at(store, "s1", pending[1].id)
    assert [r.run_id for r in conv.sessions["s1"].runs] == ["r3", "r4"]  # what the file holds while Redis is away
    assert list(store.tail(after=store.last_position(), timeout=0.2)) == []
    assert store.verify().ok
    killable_redis.start()
    assert store.sync().replayed == 3
    assert _counts(view) == (2, 2)  # a view stays at its point
    killable_redis.kill()
    store.append("session/s1", [_run(6, "s1")])  # a second outage: pending again, after a sync
    killable_redis.start()
    assert store.verify().ok
    assert list(store.tail(after=store.last_position(), timeout=0.2)) == []
    store.close()


def test_the_sync_checkpoint_never_moves_backwards(tmp_path: Path) -> None:
    """Two processes syncing one file store finish batches in any order: the shared checkpoint
    keeps the furthest, and the one behind takes it up instead of writing over it."""
    from eventlog import Cursor
    from eventlog.memory import MemoryStore

    a = FallbackStore(MemoryStore(), JsonlStore(tmp_path / "fb"), auto_sync=False)
    b = FallbackStore(MemoryStore(), JsonlStore(tmp_path / "fb"), auto_sync=False)
    a._synced, b._synced = Cursor({0: 10}), Cursor({0: 9})
    a._save_checkpoint()
    b._save_checkpoint()
    assert Cursor.of((tmp_path / "fb" / "sync.checkpoint").read_text()) == Cursor({0: 10})
    assert b._synced.get(0) == 10
    assert not list((tmp_path / "fb").glob("*.tmp"))
    c = FallbackStore(MemoryStore(), JsonlStore(tmp_path / "fb"), auto_sync=False)
    assert c._synced.get(0) == 10
    for store in (a, b, c):
        store.close()


def test_eventlog_verify_on_a_fallback_with_pending_events(killable_redis: RedisServer, tmp_path: Path) -> None:
    """`eventlog verify` checks what `FallbackStore.verify` checks: Redis's log, and the file's
    own chain while events are pending — no false break from the pending numbering."""
    from tests.test_cli import eventlog

    store = FallbackStore(RedisStreamStore.from_url(killable_redis.url), JsonlStore(tmp_path / "fb"), auto_sync=False)
    for outage in range(2):
        store.append("session/s1", [_run(10 * outage, "s1")])
        killable_redis.kill()
        store.append("session/s1", [_run(10 * outage + 1, "s1")])
        killable_redis.start()
        if outage == 0:
            store.sync()
    assert store.pending() == 1  # pending after an earlier outage's sync: positions past 1
    store.close()
    done = eventlog("verify", "--url", killable_redis.url, "--fallback", str(tmp_path / "fb"), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["ok"] is True


def test_an_append_whose_reply_is_lost_is_counted_once(killable_redis: RedisServer, tmp_path: Path) -> None:
    """Redis stores the event but its reply is lost twice: the fallback writes the same event
    to the file. It is Redis's: never read as pending, counted once, and the read models'
    cursor stays Redis's (snapshots keep being saved)."""
    from projections import ProjectionRunner, all_projections
    from tests.test_redis_hot_path import _lose_replies

    primary = RedisStreamStore.from_url(killable_redis.url)
    store = FallbackStore(primary, JsonlStore(tmp_path / "fb"), auto_sync=False)
    runner = ProjectionRunner(store, all_projections())
    for i in range(3):
        store.append("session/s1", [_run(i, "s1")])
    runner.catch_up()
    _lose_replies(primary._held[0], 2)
    store.append("session/s1", [_run(3, "s1")])  # stored in Redis, and in the file
    assert store.pending() == 1
    for _ in range(2):
        runner.catch_up()
        assert _counts(runner) == (4, 4)
    assert store.sync().already_present == 1
    store.append("session/s1", [_run(4, "s1")])
    runner.catch_up()
    assert _counts(runner) == (5, 5)
    assert runner.cursor.offsets.keys() == {0}
    store.close()


def test_the_follower_does_not_fold_twice_what_reached_redis_meanwhile(
        killable_redis: RedisServer, tmp_path: Path) -> None:
    """The follower's tail read X while pending; before it applies X, a sync puts X in Redis
    and a catch-up folds X from there: applying the stale pending X must not count it again."""
    from projections import ProjectionRunner, all_projections

    store = FallbackStore(RedisStreamStore.from_url(killable_redis.url), JsonlStore(tmp_path / "fb"), auto_sync=False)
    runner = ProjectionRunner(store, all_projections(), use_snapshots=False)
    for i in range(3):
        store.append("session/s1", [_run(i, "s1")])
    runner.catch_up()
    tail = store.tail(after=runner.cursor)
    killable_redis.kill()
    store.append("session/s1", [_run(3, "s1")])
    stale = next(tail)  # the follower has it, as pending ...
    killable_redis.start()
    store.sync()  # ... the health thread syncs it ...
    runner.catch_up()  # ... a read folds it from Redis ...
    runner.apply(stale)  # ... then the follower applies what it read
    assert _counts(runner) == (4, 4)
    assert runner.cursor.offsets.keys() == {0}
    store.close()
