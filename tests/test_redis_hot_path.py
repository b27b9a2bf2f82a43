"""The single-server append path: the store sends its EVALSHA over connections it holds itself
(not through redis-py's command machinery). What that path must still do like redis-py's:
reconnect after a restart, fail as StoreUnavailable when Redis is gone, reload the script on
NOSCRIPT, authenticate and select the db, never leave a reply unread, serve several threads at
once, WAIT on the connection that wrote, and give its connections back on close. Real
redis-server throughout."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.connection import PythonRespSerializer

from eventlog import EventLogError, LogLost, MessageAppended, StoreUnavailable, new_event
from eventlog.redis_store import _APPEND_HEAD_ARGS, _MAX_HELD, RedisStreamStore, _pack_command, _packed_args
from tests.conftest import need_redis_binary
from tests.redis_server import RedisServer


def _connected(conn: Any) -> bool:
    """Whether a redis-py connection has its socket (what `Connection.is_connected` says from
    redis-py 8.0 on; `_sock` in every release the library supports, back to 5.3)."""
    return getattr(conn, "_sock", None) is not None


def msg(text: str, session: str = "s1"):  # type: ignore[no-untyped-def]
    return new_event(MessageAppended(session_id=session, role="user", content=text))


def redis_store(url: str) -> RedisStreamStore:
    store = RedisStreamStore.from_url(url)
    assert store._direct, "a plain redis.Redis client appends over its held connections"
    return store


def held(store: RedisStreamStore) -> Any:
    assert len(store._held) == 1, store._held
    return store._held[0]


def assert_chain(store: RedisStreamStore, stream: str, n: int) -> None:
    chain = list(store.read(stream))
    assert [e.version for e in chain] == list(range(1, n + 1))
    assert all(b.prev_hash == a.hash for a, b in zip(chain, chain[1:]))


def test_packed_command_is_what_redis_py_sends() -> None:
    sha = "f" * 40
    keys = ["el:{el:0}:log", "el:{el:0}:seq", "el:{el:0}:ids", "el:{el:0}:heads", "el:{el:0}:s:session/ünï",
            "el:{el:0}:logid"]
    args = ["session/ünï", -1, 0, "", "1 " + "a" * 64, 1, "id-é", b'{"x":"\xc3\xa9\r\n"}', b""]
    prefix = _packed_args(["EVALSHA", sha, len(keys), *keys])
    ours = _pack_command(prefix, _APPEND_HEAD_ARGS, args)
    python_packer = PythonRespSerializer(6000, redis.connection.Encoder("utf-8", "strict", False).encode)
    assert ours == b"".join(python_packer.pack("EVALSHA", sha, 6, *keys, *args))


def test_only_a_plain_client_takes_the_direct_path(redis_url: str) -> None:
    fakeredis = pytest.importorskip("fakeredis")
    assert not RedisStreamStore(fakeredis.FakeRedis(), url="redis://fake")._direct
    blocking = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(redis_url))
    assert not RedisStreamStore(blocking, url=redis_url)._direct  # redis-py's path, as before
    store = redis_store(redis_url)
    store.append("session/s1", [msg("a")])
    conn = held(store)
    store.append("session/s1", [msg("b")])
    assert held(store) is conn  # one connection, reused
    assert redis.Redis.from_url(redis_url).xlen("el:{el:0}:log") == 2
    store.close()


def test_append_after_a_restart_reconnects_and_stores_once(killable_redis: RedisServer) -> None:
    store = redis_store(killable_redis.url)
    first = store.append("session/s1", [msg("a"), msg("b")])
    stale = held(store)
    killable_redis.kill()  # kill -9: the held socket is now dead, and the script cache is gone
    killable_redis.start()
    later = store.append("session/s1", [msg("c")])
    assert held(store) is stale and _connected(stale)  # the same connection, reconnected
    assert later[0].version == 3 and later[0].prev_hash == first[1].hash and later[0].position == 3
    assert [e.id for e in store.read_all()] == [first[0].id, first[1].id, later[0].id]
    assert_chain(store, "session/s1", 3)
    assert store.verify().ok
    store.close()


def test_append_with_redis_down_is_store_unavailable_then_recovers(killable_redis: RedisServer) -> None:
    store = redis_store(killable_redis.url)
    store.append("session/s1", [msg("a")])
    killable_redis.kill()
    with pytest.raises(StoreUnavailable, match="unavailable"):
        store.append("session/s1", [msg("lost")])
    assert not _connected(held(store))
    killable_redis.start()
    recorded = store.append("session/s1", [msg("b")])
    assert recorded[0].version == 2
    assert_chain(store, "session/s1", 2)
    store.close()


def test_store_opened_while_redis_is_down(killable_redis: RedisServer) -> None:
    killable_redis.kill()
    store = redis_store(killable_redis.url)  # the config check is deferred
    with pytest.raises(StoreUnavailable):
        store.append("session/s1", [msg("a")])
    assert store._held == []  # no connection was ever handed out
    killable_redis.start()
    assert store.append("session/s1", [msg("b")])[0].version == 1
    store.close()


def _lose_replies(conn: Any, times: int) -> list[int]:
    """Make `conn` read each reply and then fail as if the socket broke, `times` times."""
    real = conn.read_response
    calls = [0]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        reply = real(*args, **kwargs)
        if calls[0] < times:
            calls[0] += 1
            raise redis.ConnectionError("reply lost (test)")
        return reply

    conn.read_response = flaky
    return calls


def test_a_lost_reply_is_retried_once_and_answers_with_the_stored_event(redis_url: str) -> None:
    store = redis_store(redis_url)
    store.append("session/s1", [msg("a")])
    calls = _lose_replies(held(store), 1)
    event = msg("b")
    recorded = store.append("session/s1", [event])  # ran, reply lost, retried: DUP
    assert calls == [1]
    assert recorded[0].id == event.id and recorded[0].version == 2 and recorded[0].position == 2
    assert list(store.read("session/s1"))[1] == recorded[0]
    assert redis.Redis.from_url(redis_url).xlen("el:{el:0}:log") == 2  # stored once
    assert store.append("session/s1", [msg("c")])[0].version == 3
    assert_chain(store, "session/s1", 3)
    store.close()


def test_a_second_failure_is_store_unavailable_and_stores_once(redis_url: str) -> None:
    store = redis_store(redis_url)
    store.append("session/s1", [msg("a")])
    conn = held(store)
    calls = _lose_replies(conn, 2)
    event = msg("b")
    with pytest.raises(StoreUnavailable, match="reply lost"):
        store.append("session/s1", [event])
    assert calls == [2] and not _connected(conn)
    again = store.append("session/s1", [event])  # the caller's retry: the stored twin
    assert again[0].version == 2 and again[0].position == 2
    assert redis.Redis.from_url(redis_url).xlen("el:{el:0}:log") == 2
    store.close()


def test_script_flush_reloads_on_the_same_connection(redis_url: str) -> None:
    store = redis_store(redis_url)
    store.append("session/s1", [msg("a")])
    conn = held(store)
    sock = conn._sock
    client = redis.Redis.from_url(redis_url)
    client.script_flush()
    recorded = store.append("session/s1", [msg("b"), msg("c")])
    assert [e.version for e in recorded] == [2, 3]
    assert held(store) is conn and conn._sock is sock  # NOSCRIPT was read: no reconnect needed
    assert client.script_exists(store._append_sha) == [True]
    assert client.xlen("el:{el:0}:log") == 3
    assert_chain(store, "session/s1", 3)
    store.close()


def test_a_script_error_raises_and_leaves_no_reply_behind(redis_url: str) -> None:
    store = redis_store(redis_url)
    store.append("session/s1", [msg("a")])
    conn = held(store)
    client = redis.Redis.from_url(redis_url)
    client.rename("el:{el:0}:ids", "saved")
    client.set("el:{el:0}:ids", "not a hash")  # HMGET in the script: WRONGTYPE
    with pytest.raises(EventLogError, match="WRONGTYPE"):  # the project's error, not redis-py's
        store.append("session/s1", [msg("b")])
    assert not _connected(conn)  # dropped rather than trusted
    client.delete("el:{el:0}:ids")
    client.rename("saved", "el:{el:0}:ids")
    assert store.append("session/s1", [msg("c")])[0].version == 2
    assert_chain(store, "session/s1", 2)
    store.close()


def test_concurrent_appends_from_threads_keep_every_chain(redis_url: str) -> None:
    store = redis_store(redis_url)
    threads, per_thread = 8, 150
    errors: list[BaseException] = []
    recorded: list[str] = []
    start = threading.Barrier(threads + 1)
    reads = [0]

    def writer(t: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                # a stream every thread shares (STALE races) and one of its own
                stream = "session/shared" if i % 2 else f"session/t{t}"
                session = stream.split("/")[1]
                out = store.append(stream, [msg(f"{t}-{i}", session)])
                recorded.append(out[0].id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        start.wait()
        while any(w.is_alive() for w in workers):
            list(store.read("session/shared"))
            reads[0] += 1

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    r = threading.Thread(target=reader)
    r.start()
    for w in workers:
        w.join()
    r.join()
    assert not errors, errors
    assert reads[0] > 0  # reads ran alongside (over the client's pool)
    ids = [e.id for e in store.read_all()]
    assert len(ids) == threads * per_thread and Counter(ids).most_common(1)[0][1] == 1
    assert set(ids) == set(recorded)
    assert_chain(store, "session/shared", threads * per_thread // 2)
    for t in range(threads):
        assert_chain(store, f"session/t{t}", per_thread // 2)
    assert [e.position for e in store.read_all()] == list(range(1, threads * per_thread + 1))
    assert store.verify().ok
    assert 1 <= len(store._held) <= _MAX_HELD
    store.close()


def test_close_gives_the_connections_back(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    before = len(client.client_list())
    store = redis_store(redis_url)
    store.append("session/s1", [msg("a")])
    list(store.read("session/s1"))
    conn = held(store)
    assert len(client.client_list()) > before
    store.close()
    assert store._held == [] and not _connected(conn)
    deadline = time.monotonic() + 5
    while len(client.client_list()) > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(client.client_list()) == before
    with pytest.raises(EventLogError, match="closed"):
        store.append("session/s1", [msg("b")])
    store.close()  # idempotent


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_appends_over_its_own_connection(redis_url: str) -> None:
    store = redis_store(redis_url)
    store.append("session/s1", [msg("a")])
    parent = held(store)
    lock = store._route("session/s1").lock
    lock.acquire()  # as if a parent thread were mid-append when the process forked
    try:
        pid = os.fork()
        if pid == 0:  # the child: append, then say how it went through the exit code
            code = 1
            try:
                recorded = store.append("session/s1", [msg("from the child")])
                code = 0 if recorded[0].version == 2 and held(store) is not parent else 2
            finally:
                os._exit(code)
    finally:
        lock.release()
    deadline = time.monotonic() + 20
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung appending")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _connected(parent) and held(store) is parent  # the parent's socket is untouched
    recorded = store.append("session/s1", [msg("b")])  # still in sync with the server
    assert recorded[0].version == 3
    assert_chain(store, "session/s1", 3)
    store.close()


def test_password_and_db_from_the_url_survive_a_restart(tmp_path: Path) -> None:
    need_redis_binary()
    server = RedisServer(tmp_path / "auth", extra=["--requirepass", "s3cr3t-pw"]).start()
    try:
        url = f"redis://:s3cr3t-pw@127.0.0.1:{server.port}/3"
        store = redis_store(url)
        store.append("session/s1", [msg("a")])
        server.restart()  # nothing kept (no AOF): the log is gone
        # It reconnects (AUTH and SELECT 3 again: a refused AUTH would be StoreUnavailable),
        # finds the log gone and says so instead of starting it again from version 1.
        with pytest.raises(LogLost, match="has lost log"):
            store.append("session/s2", [msg("b", "s2")])
        check = redis.Redis(port=server.port, password="s3cr3t-pw", db=3)
        assert check.dbsize() == 0  # nothing written
        store.close()
        fresh = redis_store(url)  # a new log, on purpose (a process that never saw the old one)
        fresh.append("session/s2", [msg("b", "s2")])
        assert check.xlen("el:{el:0}:log") == 1 and check.exists("el:{el:0}:s:session/s2")
        assert redis.Redis(port=server.port, password="s3cr3t-pw", db=0).dbsize() == 0
        fresh.close()
    finally:
        server.kill()


def test_wait_replicas_waits_on_the_connection_that_wrote(tmp_path: Path) -> None:
    """WAIT counts the replicas that have the calling connection's own writes: sent on any
    other connection it would return at once. A stopped replica must make the append fail."""
    need_redis_binary()
    primary = RedisServer(tmp_path / "primary").start()
    replica = RedisServer(tmp_path / "replica", extra=["--replicaof", "127.0.0.1", str(primary.port)]).start()
    try:
        check = redis.Redis(port=replica.port)
        deadline = time.monotonic() + 10
        while check.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "replica did not sync"
            time.sleep(0.05)
        store = redis_store(f"{primary.url}?wait_replicas=1")
        store.append("session/s1", [msg("a")])
        assert replica.proc is not None
        os.kill(replica.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(StoreUnavailable, match="only 0 of 1 replicas"):
                store.append("session/s1", [msg("b")])
        finally:
            os.kill(replica.proc.pid, signal.SIGCONT)
        assert _connected(held(store))  # a short WAIT is an answer, not a broken connection
        recorded = store.append("session/s1", [msg("c")])
        assert recorded[0].version == 3  # "b" was stored on the primary (retrying it is safe)
        assert_chain(store, "session/s1", 3)
        store.close()
    finally:
        replica.kill()
        primary.kill()


def test_a_lost_reply_still_waits_for_replicas(redis_url: str) -> None:
    """With wait_replicas, the retry of a lost reply answers DUP: the append must still not
    return before replicas confirm (none exist here, so it must say so), not skip the WAIT."""
    store = RedisStreamStore.from_url(redis_url + "?wait_replicas=1")
    assert store._direct
    with pytest.raises(StoreUnavailable, match="0 of 1 replicas"):
        store.append("session/s1", [msg("a")])
    _lose_replies(held(store), 1)
    with pytest.raises(StoreUnavailable, match="0 of 1 replicas"):
        store.append("session/s1", [msg("b")])
    assert redis.Redis.from_url(redis_url).xlen("el:{el:0}:log") == 2  # both stored, once
    store.close()


@pytest.mark.parametrize("lose", [False, True])
def test_through_redis_py_a_stored_or_retried_append_waits_for_replicas(redis_url: str, lose: bool) -> None:
    """Off the direct path (a small pool, a Sentinel or blocking pool, a Cluster), redis-py
    sends the append: with wait_replicas=1 and no replica the append is stored but must fail,
    and its retry (the same event ids: DUP) must fail likewise rather than report success
    for an unreplicated event."""
    client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(redis_url, max_connections=2))
    store = RedisStreamStore(client, url=redis_url, wait_replicas=1, timeout=0.5)
    assert not store._direct
    event = msg("a")
    with pytest.raises(StoreUnavailable, match="0 of 1 replicas"):
        store.append("session/s1", [event])
    if lose:  # (a fresh store: nothing cached, the retry is a DUP from the server's side only)
        store.close()
        client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(redis_url, max_connections=2))
        store = RedisStreamStore(client, url=redis_url, wait_replicas=1, timeout=0.5)
    with pytest.raises(StoreUnavailable, match="0 of 1 replicas"):
        store.append("session/s1", [event])
    assert redis.Redis.from_url(redis_url).xlen("el:{el:0}:log") == 1  # stored once
    store.close()


def test_a_small_pool_is_not_held_from_its_readers(redis_url: str) -> None:
    """Held connections count against the pool's max_connections: a store over a small pool
    goes through redis-py, so reads keep getting connections."""
    client = redis.Redis(connection_pool=redis.ConnectionPool.from_url(redis_url, max_connections=2))
    client.set_response_callback("XRANGE", lambda response, **options: response)
    store = RedisStreamStore(client, url=redis_url)
    assert not store._direct

    def write(k: int) -> None:
        for i in range(20):
            store.append(f"session/t{k}", [msg(f"{k}-{i}", f"t{k}")])

    threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for _ in store.read_all()) == 40
    store.close()


def test_a_str_subclass_stream_name_is_packed_as_its_text(redis_url: str) -> None:
    import enum

    class Stream(str, enum.Enum):
        S1 = "session/s1"

    store = redis_store(redis_url)
    assert store.append(Stream.S1, [msg("a")])[0].version == 1
    assert [(e.stream, type(e.stream)) for e in store.read("session/s1")] == [("session/s1", str)]
    assert [e.version for e in store.read(Stream.S1)] == [1]
    store.close()
