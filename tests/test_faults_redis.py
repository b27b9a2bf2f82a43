"""Faults of Redis the log must survive or say out loud (issue 17, cases 1, 2, 4, 5), each
against a real redis-server this test starts, kills, freezes, restarts empty or starves of
memory: nothing acknowledged is lost where Redis kept it, and where Redis lost it the loss
is reported (LogLost / LogDiverged), never papered over."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from eventlog import (
    ConcurrencyError,
    EventLogError,
    LogDiverged,
    LogLost,
    MessageAppended,
    StoreRefused,
    StoreUnavailable,
    new_event,
    open_store,
)
from eventlog.stores.fallback import FallbackStore
from eventlog.stores.jsonl import JsonlStore
from eventlog.stores.redis_store import RedisStreamStore
from tests.conftest import need_redis_binary
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[1]


def msg(text: str, session: str = "s1", size: int = 0):  # type: ignore[no-untyped-def]
    return new_event(MessageAppended(session_id=session, role="user", content=text + "x" * size))


def _server(tmp_path: Path, name: str, *extra: str) -> RedisServer:
    need_redis_binary()
    return RedisServer(tmp_path / name, extra=list(extra)).start()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "EVENTLOG_URL": "", "EVENTLOG_OFFLINE": ""}
    return subprocess.run([sys.executable, "-m", "adapters.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=full, timeout=60)



def test_a_store_opened_before_the_log_existed_reads_the_log_another_client_creates(redis_url: str) -> None:
    """Opened on an empty Redis (no log yet), a store looks again on each use: once another
    client's first append creates the log, reads here return its events — never LogLost for
    a stream index that has no log (the log is new, not gone) and never an empty stream."""
    early = RedisStreamStore.from_url(redis_url)
    assert list(early.read("session/s1")) == [] and early.seen_positions() == {}
    other = RedisStreamStore.from_url(redis_url)
    other.append("session/s1", [msg("first")])
    assert sum(1 for _ in early.read_all()) == 1  # (first: a read of the stream would re-check on its own)
    assert [e.payload.content for e in early.read("session/s1")] == ["first"]
    early.close()
    other.close()


def test_while_one_thread_rechecks_the_log_others_wait_for_it_not_skip_it(tmp_path: Path) -> None:
    """After a restart empty, the first caller re-checks the log's identity; a second thread
    calling meanwhile must not take that check as done: it waits, and gets LogLost too, rather
    than a plain read of the empty server answered as if it were the log (position 0)."""
    import threading

    server = _server(tmp_path, "redis")
    try:
        store = RedisStreamStore.from_url(server.url)
        for i in range(5):
            store.append("session/s1", [msg(str(i))])
        server.restart()  # no AOF, no RDB: everything is gone
        store._config_checked = False  # (what the first command to the restarted server sets)
        in_check, release = threading.Event(), threading.Event()
        plain_hgetall = store.client.hgetall

        def slow_hgetall(*args, **kwargs):  # type: ignore[no-untyped-def]
            if threading.current_thread().name == "checker":
                in_check.set()
                release.wait(30)
            return plain_hgetall(*args, **kwargs)

        store.client.hgetall = slow_hgetall  # type: ignore[method-assign]
        outcomes: dict[str, object] = {}

        def call(name: str, fn) -> None:  # type: ignore[no-untyped-def]
            try:
                outcomes[name] = fn()
            except Exception as exc:  # (the outcome is what is compared)
                outcomes[name] = exc

        checker = threading.Thread(target=call, name="checker", args=("checker", store.last_position))
        checker.start()
        assert in_check.wait(30)
        other = threading.Thread(target=call, name="other", args=("other", store.last_position))
        other.start()
        other.join(0.5)
        release.set()
        checker.join(30)
        other.join(30)
        assert isinstance(outcomes["checker"], LogLost), outcomes
        assert isinstance(outcomes["other"], LogLost), outcomes
        store.close()
    finally:
        server.kill()


# --- case 1: a Redis without persistence restarted empty -------------------------------------

def test_redis_restarted_empty_is_a_lost_log_not_a_fresh_one(tmp_path: Path) -> None:
    server = _server(tmp_path, "redis")
    try:
        store = RedisStreamStore.from_url(server.url)
        for i in range(5):
            store.append("session/s1", [msg(str(i))])
        server.restart()  # no AOF, no RDB: everything is gone
        with pytest.raises(LogLost, match="has lost log") as lost:
            store.append("session/s1", [msg("after")], expected_version=5)
        assert "partition 0 up to position 5" in str(lost.value)
        with pytest.raises(LogLost):
            list(store.read("session/s1"))
        with pytest.raises(LogLost):
            list(store.read_all())
        report = store.verify()
        assert not report.ok and report.first_break is not None and report.first_break.kind == "lost"
        info = store.info()
        assert info["log_problem"] and "has lost log" in info["log_problem"]
        assert redis.Redis(port=server.port).dbsize() == 0  # nothing written into the empty server
        store.close()
    finally:
        server.kill()


def test_under_fallback_a_restart_empty_keeps_buffering_and_says_so(tmp_path: Path) -> None:
    """REDIS_URL + fallback: appends go on into the file, nothing is replayed into the empty
    Redis (not by sync, not by the health check), reads raise, and `eventlog verify` /
    `eventlog doctor` in a fresh process exit 1 naming the loss."""
    server = _server(tmp_path, "redis")
    fb = tmp_path / "fb"
    try:
        store = open_store(server.url, fallback=str(fb))
        assert isinstance(store, FallbackStore)
        store._health_interval = 0.1
        for i in range(20):
            store.append(f"session/s{i % 4}", [msg(str(i), f"s{i % 4}")])
        assert (fb / "primary.identity").exists()
        server.restart()
        written = store.append("session/s0", [msg("kept", "s0")])
        assert written and store.lost is not None and isinstance(store.lost, LogLost)
        assert store.pending() == 1
        with pytest.raises(LogLost):
            list(store.read("session/s0"))
        with pytest.raises(LogLost):
            store.sync()
        time.sleep(0.5)  # the health check runs meanwhile: it must not replay either
        assert redis.Redis(port=server.port).dbsize() == 0
        store.close()

        env = {"REDIS_URL": server.url, "MEMORY_DIR": str(tmp_path)}
        (tmp_path / "fallback").symlink_to(fb)  # MEMORY_DIR/fallback is the fallback's directory
        verify = _cli(env, "verify", "--json")
        assert verify.returncode == 1, verify.stderr
        assert '"lost"' in verify.stdout
        doctor = _cli(env, "doctor", "--json")
        assert doctor.returncode == 1, doctor.stderr
        assert "lost log" in doctor.stdout or "another log" in doctor.stdout
        assert redis.Redis(port=server.port).dbsize() == 0  # the fresh processes wrote nothing either

        # a fresh process on the same fallback directory knows the log too
        again = open_store(server.url, fallback=str(fb))
        assert isinstance(again, FallbackStore) and again.lost is not None
        again.append("session/s1", [msg("also kept")])
        assert again.pending() == 2
        again.close()
    finally:
        server.kill()


def test_a_restored_backup_brings_the_log_back_and_sync_replays_into_it(tmp_path: Path) -> None:
    """The documented recovery: restore Redis from its backup (here its RDB dump, taken
    before the loss); the fallback sees its own log again and replays what it buffered."""
    server = _server(tmp_path, "redis")
    fb = tmp_path / "fb"
    try:
        store = open_store(server.url, fallback=str(fb))
        assert isinstance(store, FallbackStore)
        store.stop_auto_sync()
        for i in range(5):
            store.append("session/s1", [msg(str(i))])
        admin = redis.Redis(port=server.port)
        admin.save()  # the backup
        dump = (server.workdir / "dump.rdb").read_bytes()
        (server.workdir / "dump.rdb").unlink()
        server.restart()  # comes back empty (no dump to load)
        store.append("session/s1", [msg("during")])
        assert store.lost is not None
        server.stop()
        (server.workdir / "dump.rdb").write_bytes(dump)  # restore: Redis loads it at start
        server.start()
        summary = store.sync()
        assert summary.replayed == 1 and store.lost is None
        contents = [e.payload.content for e in store.read("session/s1")]  # type: ignore[attr-defined]
        assert contents == ["0", "1", "2", "3", "4", "during"]
        assert store.verify().ok
        store.close()
    finally:
        server.kill()


def test_a_redis_replaced_by_another_log_is_a_diverged_log(tmp_path: Path) -> None:
    server = _server(tmp_path, "redis")
    try:
        store = RedisStreamStore.from_url(server.url)
        store.append("session/s1", [msg("mine")])
        redis.Redis(port=server.port).flushall()
        other = RedisStreamStore.from_url(server.url)  # another log made in its place
        other.append("session/s1", [msg("theirs")])
        with pytest.raises(LogDiverged, match="belongs to log"):
            store.append("session/s1", [msg("mine again")])
        with pytest.raises(LogDiverged):
            list(store.read("session/s1"))
        assert [e.payload.content for e in other.read("session/s1")] == ["theirs"]  # type: ignore[attr-defined]
        store.close()
        other.close()
    finally:
        server.kill()


# --- case 2: eviction (maxmemory-policy allkeys-lru) -----------------------------------------

def test_evicted_keys_are_reported_never_read_as_a_shorter_log(tmp_path: Path) -> None:
    server = _server(tmp_path, "redis")
    try:
        store = RedisStreamStore.from_url(server.url)
        acked: dict[str, int] = {}
        for i in range(400):
            stream = f"session/s{i % 100}"
            store.append(stream, [msg(str(i), f"s{i % 100}", size=200)])
            acked[stream] = acked.get(stream, 0) + 1
        admin = redis.Redis(port=server.port)
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory-policy", "allkeys-lru")
        admin.config_set("maxmemory", str(used - 60_000))
        admin.set("pressure", "y" * 1000)  # a write: Redis evicts to make room
        assert int(admin.info("stats")["evicted_keys"]) > 0
        admin.config_set("maxmemory", "0")

        left = {k.decode() for k in admin.keys("el:*")}
        # What a process that never saw the log cannot tell from an empty one (the module
        # docstring of eventlog.stores.redis_identity): every data key of the partition gone.
        # The log's id (config, the partition's `logid`) says which log it is, not what it held.
        no_data = not any(k in left for k in ("el:{el:0}:seq", "el:{el:0}:log", "el:{el:0}:ids", "el:{el:0}:heads"))

        def complete_or_lost(stream: str, reader: RedisStreamStore) -> str:
            try:
                got = list(reader.read(stream))
            except LogLost:
                return "lost"
            if not got and reader is not store and no_data and f"el:{{el:0}}:s:{stream}" not in left:
                return "untraceable"  # nothing of the log or of the stream is left: a fresh reader cannot know
            assert len(got) == acked[stream], f"{stream}: {len(got)} of {acked[stream]} read as complete"
            return "complete"

        for reader in (store, RedisStreamStore.from_url(server.url)):  # this process, and a fresh one
            outcomes = {complete_or_lost(s, reader) for s in acked}
            assert outcomes & {"lost", "untraceable"}
            try:
                events = list(reader.read_all())
            except LogLost:
                pass
            else:
                # (a fresh reader with nothing of the log left but its id and stream indexes cannot know)
                assert len(events) == sum(acked.values()) or (reader is not store and no_data and not events)
        with pytest.raises(LogLost):  # some stream (or the partition) lost keys: appends refuse
            for stream in acked:
                store.append(stream, [msg("late", stream.split("/")[1])])
        store.close()
    finally:
        server.kill()


def test_a_partition_left_with_only_its_id_is_lost_to_a_process_that_saw_it(tmp_path: Path) -> None:
    """The eviction the test above met at random, made exact: the partition's data keys and
    one stream's index gone, the log's id (config, `logid`) and other streams' indexes left.
    The writer (it saw positions) reports the loss for every stream and for the log; a
    process started after it can tell only where something of the stream is left."""
    server = _server(tmp_path, "redis")
    try:
        store = RedisStreamStore.from_url(server.url)
        for i in range(8):
            store.append(f"session/s{i % 2}", [msg(str(i), f"s{i % 2}")])
        admin = redis.Redis(port=server.port)
        admin.delete("el:{el:0}:seq", "el:{el:0}:log", "el:{el:0}:ids", "el:{el:0}:heads", "el:{el:0}:s:session/s0")
        for stream in ("session/s0", "session/s1"):
            with pytest.raises(LogLost):
                list(store.read(stream))
        with pytest.raises(LogLost):
            list(store.read_all())
        fresh = RedisStreamStore.from_url(server.url)
        with pytest.raises(LogLost):  # its index is left, its entries are not
            list(fresh.read("session/s1"))
        fresh.close()
        store.close()
    finally:
        server.kill()


# --- case 4: a frozen Redis (SIGSTOP) --------------------------------------------------------

def test_a_frozen_redis_costs_a_bounded_wait_then_the_fallback_takes_appends(tmp_path: Path) -> None:
    server = _server(tmp_path, "redis", "--appendonly", "yes")
    assert server.proc is not None
    try:
        store = open_store(f"{server.url}?timeout=1", fallback=str(tmp_path / "fb"))
        assert isinstance(store, FallbackStore)
        store._health_interval = 0.2
        store.append("session/s1", [msg("before")])
        plain = RedisStreamStore.from_url(server.url)  # the default timeout (2 s)
        assert len(list(plain.read("session/s1"))) == 1
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            store.append("session/s1", [msg("frozen 1")])
            first = time.monotonic() - started
            started = time.monotonic()
            for i in range(5):
                store.append("session/s1", [msg(f"frozen {i + 2}")])
            rest = time.monotonic() - started
            assert first < 2.5 and rest < 1.0, (first, rest)
            assert store.degraded and store.pending() == 6
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="Timeout"):
                list(plain.read("session/s1"))
            assert time.monotonic() - started < 4.5  # one 2 s timeout (no 10 retries with backoff)
            started = time.monotonic()
            assert len(list(store.read("session/s1"))) >= 6  # the fallback's reads do not hang either
            assert time.monotonic() - started < 2.5
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        deadline = time.monotonic() + 15
        while store.pending() and time.monotonic() < deadline:  # the health check syncs
            time.sleep(0.1)
        assert store.pending() == 0
        contents = [e.payload.content for e in plain.read("session/s1")]  # type: ignore[attr-defined]
        assert contents == ["before", *[f"frozen {i + 1}" for i in range(6)]]
        store.close()
        plain.close()
    finally:
        server.kill()


def test_the_timeout_option_is_checked() -> None:
    with pytest.raises(EventLogError, match="timeout"):
        RedisStreamStore.from_url("redis://127.0.0.1:1/0?timeout=0")
    with pytest.raises(EventLogError, match="bad option"):
        RedisStreamStore.from_url("redis://127.0.0.1:1/0?timeout=soon")


# --- case 5: out of memory under noeviction --------------------------------------------------

def test_out_of_memory_is_the_projects_error_and_the_fallback_takes_the_write(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = _server(tmp_path, "redis", "--maxmemory", "3mb", "--maxmemory-policy", "noeviction")
    try:
        store = RedisStreamStore.from_url(server.url)
        written = 0
        with pytest.raises(StoreRefused, match="OOM") as refused:
            for i in range(10_000):
                store.append("session/s1", [msg(str(i), size=2000)])
                written += 1
        assert not isinstance(refused.value, redis.RedisError)
        assert store.head("session/s1").version == written  # nothing of the refused append
        assert len(list(store.read("session/s1"))) == written

        caplog.set_level(logging.WARNING, logger="eventlog.fallback")
        fallback = FallbackStore(RedisStreamStore.from_url(server.url), JsonlStore(tmp_path / "fb"), auto_sync=False)
        kept = fallback.append("session/s1", [msg("refused by redis", size=2000)])
        assert kept and fallback.degraded and fallback.pending() == 1
        assert any("unavailable" in r.getMessage() and "OOM" in r.getMessage() for r in caplog.records)
        redis.Redis(port=server.port).config_set("maxmemory", "0")  # the operator makes room
        assert fallback.sync().replayed == 1
        assert store.head("session/s1").version == written + 1
        fallback.close()
        store.close()
    finally:
        server.kill()


# --- case 6: four processes racing expected_version while Redis is down ----------------------

RACER = """
import sys
from eventlog import ConcurrencyError, MessageAppended, new_event
from eventlog.stores.fallback import FallbackStore
from eventlog.stores.jsonl import JsonlStore
from eventlog.stores.redis_store import RedisStreamStore

url, fb, name, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
store = FallbackStore(RedisStreamStore.from_url(url + "?timeout=0.5"), JsonlStore(fb), auto_sync=False)
print("ready", flush=True)
sys.stdin.readline()  # all start together
for i in range(rounds):
    version = store.head("session/race").version
    event = new_event(MessageAppended(session_id="race", role="user", content=f"{name}:{i}"))
    try:
        store.append("session/race", [event], expected_version=version)
    except ConcurrencyError:
        print("lost", event.id, flush=True)
    else:
        print("won", version + 1, event.id, flush=True)
store.close()
"""


@pytest.mark.slow
def test_four_processes_racing_expected_version_while_redis_is_down(tmp_path: Path) -> None:
    """Each expected version is won by exactly one writer, the losers get ConcurrencyError
    and nothing of theirs is stored; the replay into Redis keeps that order."""
    server = _server(tmp_path, "redis", "--appendonly", "yes")
    fb = tmp_path / "fb"
    try:
        seed = FallbackStore(RedisStreamStore.from_url(server.url), JsonlStore(fb), auto_sync=False)
        seed.append("session/race", [msg("first", "race")])  # in Redis: the stream is at version 1
        seed.close()
        server.stop()  # Redis down for the race
        procs = [subprocess.Popen([sys.executable, "-c", RACER, server.url, str(fb), f"w{k}", "40"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
                 for k in range(4)]
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        wins: dict[int, list[str]] = {}
        losers: set[str] = set()
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0
            for line in out.splitlines():
                parts = line.split()
                if parts[0] == "won":
                    wins.setdefault(int(parts[1]), []).append(parts[2])
                else:
                    losers.add(parts[1])
        assert losers  # there was a race
        assert all(len(ids) == 1 for ids in wins.values()), {v: ids for v, ids in wins.items() if len(ids) > 1}
        file_store = JsonlStore(fb)
        in_file = [e.id for e in file_store.read("session/race")]
        file_store.close()
        assert not losers & set(in_file)
        assert in_file[-len(wins):] == [wins[v][0] for v in sorted(wins)]

        server.start()
        store = FallbackStore(RedisStreamStore.from_url(server.url), JsonlStore(fb), auto_sync=False)
        assert store.sync().replayed == len(wins)
        in_redis = list(store.primary.read("session/race"))
        assert [e.version for e in in_redis] == list(range(1, len(wins) + 2))
        assert [e.id for e in in_redis[1:]] == [wins[v][0] for v in sorted(wins)]
        # the versions the winners were told: the file's (provisional while Redis is away,
        # see FallbackStore), one per writer, no gap
        assert sorted(wins) == list(range(1, len(wins) + 1))
        assert store.verify().ok
        store.close()
    finally:
        server.kill()


def test_recovery_by_import_of_an_export_then_sync_adopt(tmp_path: Path) -> None:
    """The other documented recovery: `eventlog import` an export into the emptied Redis
    (a new log, so the fallback refuses to replay into it: exit 2 naming it), then
    `eventlog sync --adopt` accepts it and replays what the fallback buffered."""
    server = _server(tmp_path, "redis")
    fb = tmp_path / "fallback"
    env = {"REDIS_URL": server.url, "MEMORY_DIR": str(tmp_path)}
    try:
        store = open_store(server.url, fallback=str(fb))
        assert isinstance(store, FallbackStore)
        store.stop_auto_sync()
        for i in range(4):
            store.append("session/s1", [msg(str(i))])
        export = _cli({}, "--url", server.url, "export", "--out", str(tmp_path / "export.jsonl"))
        assert export.returncode == 0, export.stderr
        server.restart()
        store.append("session/s1", [msg("buffered")])
        assert store.lost is not None
        store.close()
        imported = _cli({}, "--url", server.url, "import", str(tmp_path / "export.jsonl"))
        assert imported.returncode == 0, imported.stderr
        refused = _cli(env, "sync")
        assert refused.returncode == 2 and "another log" in refused.stderr, refused.stderr
        adopted = _cli(env, "sync", "--adopt", "--json")
        assert adopted.returncode == 0, adopted.stderr
        check = RedisStreamStore.from_url(server.url)
        contents = [e.payload.content for e in check.read("session/s1")]  # type: ignore[attr-defined]
        assert contents == ["0", "1", "2", "3", "buffered"]
        assert check.verify().ok
        check.close()
    finally:
        server.kill()


def test_expected_version_follows_what_reads_show_through_an_outage(tmp_path: Path) -> None:
    """Heads and reads number a stream alike while Redis is away (the file's numbering) and
    once it is back with events still pending (Redis's, then the pending ones): an append
    with the version a read showed wins, a stale one loses, in both states."""
    server = _server(tmp_path, "redis", "--appendonly", "yes")
    try:
        store = FallbackStore(RedisStreamStore.from_url(server.url), JsonlStore(tmp_path / "fb"), auto_sync=False)
        for i in range(3):
            store.append("session/s1", [msg(str(i))])
        server.stop()
        seen = list(store.read("session/s1"))  # Redis away: the file's numbering (nothing there yet)
        assert store.head("session/s1").version == len(seen)
        store.append("session/s1", [msg("down")], expected_version=len(seen))
        with pytest.raises(ConcurrencyError):
            store.append("session/s1", [msg("stale")], expected_version=len(seen))
        server.start()
        store._down_until = 0.0  # (the health thread would do this; this store has none)
        seen = list(store.read("session/s1"))  # Redis back, one event pending: 3 + 1
        assert [e.version for e in seen] == [1, 2, 3, 4] and store.head("session/s1").version == 4
        store.append("session/s1", [msg("back")], expected_version=4)
        with pytest.raises(ConcurrencyError):
            store.append("session/s1", [msg("stale")], expected_version=4)
        store.sync()
        contents = [e.payload.content for e in store.read("session/s1")]  # type: ignore[attr-defined]
        assert contents == ["0", "1", "2", "down", "back"]
        store.close()
    finally:
        server.kill()
