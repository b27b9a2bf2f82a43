"""AsyncEventLogDb on Redis without threads: the greenlet bridge, its locks, and the db on it.

On a Redis log every coroutine method runs EventLogDb's code on the event loop's thread and
awaits each command on redis.asyncio (eventlog/aio_bridge.py, eventlog/stores/redis_aio.py).
Where commands are sent is recorded at redis-py's connection classes (`sends`), so "no thread
hop" is checked where the bytes leave, not inferred. Real redis-server processes throughout.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agno.agent import Agent
from agno.db.base import SessionType
from agno.db.sqlite import AsyncSqliteDb
from agno.session import AgentSession

from adapters.agno import AsyncEventLogDb, EventLogDb, OfflineModel
from eventlog import StoreUnavailable, open_store
from eventlog.aio_bridge import BridgeLock, await_only, in_bridge, run_bridged
from tests.conftest import need_redis_binary
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis

LIMIT = 120  # seconds: a deadlock fails the test instead of hanging the run


def run(coro: Any) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, LIMIT)

    return asyncio.run(bounded())


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(client kind, thread id) of every command redis-py sends, sync or asyncio."""
    import redis.asyncio.connection as aconn
    import redis.connection as sconn

    record: list[tuple[str, int]] = []
    sync_send = sconn.AbstractConnection.send_packed_command
    async_send = aconn.AbstractConnection.send_packed_command

    def on_sync(self: Any, *args: Any, **kwargs: Any) -> Any:
        record.append(("sync", threading.get_ident()))
        return sync_send(self, *args, **kwargs)

    async def on_async(self: Any, *args: Any, **kwargs: Any) -> Any:
        record.append(("async", threading.get_ident()))
        return await async_send(self, *args, **kwargs)

    monkeypatch.setattr(sconn.AbstractConnection, "send_packed_command", on_sync)
    monkeypatch.setattr(aconn.AbstractConnection, "send_packed_command", on_async)
    return record


# --- the bridge -------------------------------------------------------------------------------

def test_bridge_returns_awaits_and_raises_where_the_sync_code_is() -> None:
    async def answer(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    async def fail() -> None:
        await asyncio.sleep(0)
        raise KeyError("from the loop")

    def sync_code(x: int) -> tuple[int, str, bool]:
        doubled = await_only(answer(x))
        try:
            await_only(fail())
        except KeyError as exc:  # raised at the await_only, catchable by the sync code
            caught = str(exc)
        return doubled, caught, in_bridge()

    def broken() -> None:
        await_only(answer(1))
        raise ValueError("from the sync code")

    async def main() -> None:
        assert await run_bridged(sync_code, 21) == (42, "'from the loop'", True)
        with pytest.raises(ValueError, match="from the sync code"):
            await run_bridged(broken)
        assert not in_bridge()

    run(main())
    with pytest.raises(RuntimeError, match="outside run_bridged"):
        await_only(answer(1))


def test_bridge_carries_context_variables_in_and_not_back() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    def sync_code() -> str:
        seen = var.get()
        var.set("changed inside")
        await_only(asyncio.sleep(0))
        return seen + "/" + var.get()

    async def main() -> None:
        var.set("caller's")
        assert await run_bridged(sync_code) == "caller's/changed inside"
        assert var.get() == "caller's"  # a copy, as asyncio.to_thread gives

    run(main())


def test_bridges_nest_and_run_side_by_side() -> None:
    def inner(n: int) -> int:
        await_only(asyncio.sleep(0))
        if n < 0:
            raise OverflowError("inner")
        return n + 1

    def outer(n: int) -> int:
        return int(await_only(run_bridged(inner, n))) * 10

    async def main() -> None:
        assert await asyncio.gather(*(run_bridged(outer, i) for i in range(20))) == [(i + 1) * 10 for i in range(20)]
        with pytest.raises(OverflowError, match="inner"):
            await run_bridged(outer, -1)

    run(main())


def test_bridge_lock_excludes_coroutines_and_is_reentrant_per_greenlet() -> None:
    lock, plain = BridgeLock(reentrant=True), BridgeLock()
    counter = {"n": 0}

    def bump() -> None:
        with lock, lock:  # (reentrant in one greenlet)
            value = counter["n"]
            await_only(asyncio.sleep(0))  # every other coroutine gets the loop here
            counter["n"] = value + 1

    def twice() -> None:
        with plain, plain:
            pass

    async def main() -> None:
        await asyncio.gather(*(run_bridged(bump) for _ in range(30)))
        assert counter["n"] == 30  # (without the lock: 1)
        with pytest.raises(RuntimeError, match="not reentrant"):
            await run_bridged(twice)
        assert not plain._lock._is_owned() and not lock._lock._is_owned()  # type: ignore[attr-defined]

    run(main())


def test_bridge_lock_against_threads_and_a_sync_caller_on_the_loop() -> None:
    lock = BridgeLock()
    order: list[str] = []
    trying = threading.Event()

    def other_thread() -> None:
        trying.set()
        with lock:
            order.append("thread has it")

    def holder() -> None:
        with lock:
            thread = threading.Thread(target=other_thread)
            thread.start()
            while not trying.is_set():
                await_only(asyncio.sleep(0.01))
            order.append("greenlet releases")
        await_only(asyncio.to_thread(thread.join, LIMIT))

    async def sync_call_while_held() -> None:
        held, go = asyncio.Event(), asyncio.Event()

        def hold() -> None:
            with lock:
                held.set()
                await_only(go.wait())

        task = asyncio.create_task(run_bridged(hold))
        await held.wait()
        with pytest.raises(RuntimeError, match="would deadlock"):
            lock.acquire()  # a plain sync call on the loop's thread: told, not hung
        go.set()
        await task
        with lock:  # free again, for plain callers too
            pass

    async def cancelled_holder() -> None:
        held = asyncio.Event()

        def hold() -> None:
            with lock:
                held.set()
                await_only(asyncio.sleep(LIMIT))

        task = asyncio.create_task(run_bridged(hold))
        await held.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await run_bridged(lambda: lock.acquire() and lock.release())  # released by the unwinding

    async def held_by_a_coroutine_as_a_thread_lock() -> None:
        # (a plain acquire on the loop's thread, kept across the await)
        with lock, pytest.raises(RuntimeError, match="plain thread lock across an await"):
            await run_bridged(lambda: lock.acquire())
        await run_bridged(lambda: lock.acquire() and lock.release())

    async def main() -> None:
        await run_bridged(holder)
        await sync_call_while_held()
        await cancelled_holder()
        await held_by_a_coroutine_as_a_thread_lock()

    run(main())
    assert order == ["greenlet releases", "thread has it"]


def test_bridged_client_outside_a_bridge_is_the_sync_client(redis_url: str, sends: list[tuple[str, int]]) -> None:
    store = open_store(redis_url)
    assert store.enable_asyncio()  # type: ignore[attr-defined]
    store.put_blob("b", b"sync")
    assert {kind for kind, _ in sends} == {"sync"}
    sends.clear()

    async def main() -> bytes | None:
        await run_bridged(store.put_blob, "b", b"async")
        return await run_bridged(store.get_blob, "b")

    assert run(main()) == b"async"
    assert set(sends) == {("async", threading.get_ident())}
    sends.clear()
    assert store.get_blob("b") == b"async" and {kind for kind, _ in sends} == {"sync"}
    store.close()


# --- AsyncEventLogDb on Redis -----------------------------------------------------------------

def test_every_call_runs_on_the_loop_thread(redis_url: str, sends: list[tuple[str, int]]) -> None:
    """A spread of AsyncBaseDb coroutines, an agent's arun and AgentOS's HTTP routes: every
    Redis command leaves from the loop's thread on redis.asyncio; no pool, no worker thread."""
    from tests.test_agentos import call, make_app, read_scenario, write_scenario

    db = AsyncEventLogDb(redis_url)
    assert db.io == "redis.asyncio"
    sends.clear()
    loop_threads: set[int] = set()
    threads_before = set(threading.enumerate())  # (other tests' pools may still be alive)

    async def calls() -> None:
        loop_threads.add(threading.get_ident())
        agent = Agent(model=OfflineModel(), db=db, user_id="u1", session_id="s1", update_memory_on_run=True)
        await agent.arun("I like tea")
        await agent.arun("and coffee")
        assert (await db.get_session("s1", SessionType.AGENT)).runs
        assert await db.get_sessions(session_type=SessionType.AGENT, user_id="u1")
        assert await db.rename_session("s1", SessionType.AGENT, "Tea")
        assert await db.get_user_memories(user_id="u1")
        assert (await db.get_user_memory_stats())[1] >= 1
        await db.delete_session("nothing")
        # not even the loop's default executor (asyncio.to_thread, DNS lookups) was started
        assert asyncio.get_running_loop()._default_executor is None  # type: ignore[attr-defined]

    run(calls())

    async def over_http(client: Any) -> Any:
        loop_threads.add(threading.get_ident())
        await write_scenario(client)
        return await read_scenario(client)

    call(make_app(db), over_http)
    assert sends and {kind for kind, _ in sends} == {"async"}
    assert {thread for _, thread in sends} <= loop_threads
    assert db._pool is None and not [t for t in threading.enumerate()
                                     if t.name.startswith("eventlog-db") and t not in threads_before]


async def conversations(db: Any, memory: bool = True) -> dict[str, Any]:
    """Turns one after another, then many at once over several sessions and on one session."""
    agent = Agent(id="a", model=OfflineModel(), db=db, add_history_to_context=True, update_memory_on_run=memory)
    for i in range(6):
        await agent.arun(f"I like tea number {i}", user_id="u1", session_id="s1")
    await asyncio.gather(*(agent.arun(f"turn {i}", user_id=f"u{i % 2}", session_id=f"c{i % 3}-u{i % 2}")
                           for i in range(12)))
    await asyncio.gather(*(agent.arun(f"same {i}", user_id="u1", session_id="same") for i in range(8)))
    sessions = await db.get_sessions(session_type=SessionType.AGENT)
    out: dict[str, Any] = {}
    for s in sessions:
        turns = [(r.input.input_content, r.content) for r in s.runs or []]
        out[s.session_id] = turns if s.session_id == "s1" else sorted(t[0] for t in turns)
    out["memories"] = sorted(m.memory for m in await db.get_user_memories(user_id="u1"))
    return out


def test_agent_runs_answer_as_on_sqlite_and_the_log_reads_back_alike(redis_url: str, tmp_path: Path) -> None:
    db = AsyncEventLogDb(redis_url)
    got = run(conversations(db))
    threads_db = AsyncEventLogDb(str(tmp_path / "log"))
    assert threads_db.io == "threads"
    assert got == run(conversations(threads_db))
    # (Agno's memory manager answers differently on SqliteDb, whichever EventLogDb flavour:
    # compared without memories)
    plain = run(conversations(AsyncEventLogDb(redis_url + "?prefix=plain"), memory=False))
    assert plain == run(conversations(AsyncSqliteDb(db_file=str(tmp_path / "agno.db")), memory=False))
    assert len(got["s1"]) == 6
    assert sum(len(v) for k, v in got.items() if k.startswith("c")) == 12 and len(got["same"]) == 8

    fresh = EventLogDb(redis_url)  # sync, another client: the same sessions and the same events
    assert {s.session_id: s.to_dict() for s in fresh.get_sessions(session_type=SessionType.AGENT)} == {
        s.session_id: s.to_dict() for s in run(db.get_sessions(session_type=SessionType.AGENT))}

    async def bridged_events() -> list[Any]:
        return await run_bridged(lambda: list(db.store.read_all()))

    assert list(fresh.store.read_all()) == run(bridged_events())
    assert fresh.store.verify().ok


def test_concurrent_writers_on_one_session_neither_lose_nor_double(redis_url: str) -> None:
    """The write lock excludes across coroutines: 40 upserts of one new session at once make
    one session.started (each upsert reads the session, awaits Redis, then writes: without
    exclusion several would find it absent), and 40 renames land as 40 events."""
    db = AsyncEventLogDb(redis_url)

    async def main() -> None:
        session = AgentSession(session_id="one", user_id="u1", agent_id="a", session_data={"session_name": "x"})
        await asyncio.gather(*(db.upsert_session(session) for _ in range(40)))
        await asyncio.gather(*(db.rename_session("one", SessionType.AGENT, f"name {i}") for i in range(40)))

    run(main())
    types = Counter(type(e.payload).__name__ for e in EventLogDb(redis_url).store.read("session/one"))
    assert types["SessionStarted"] == 1 and types["SessionRenamed"] == 40, types
    versions = [e.version for e in db.store.read("session/one")]
    assert versions == list(range(1, len(versions) + 1))


def test_two_event_loops_in_turn_on_one_db(redis_url: str, sends: list[tuple[str, int]]) -> None:
    db = AsyncEventLogDb(redis_url)
    agent = Agent(model=OfflineModel(), db=db, user_id="u1", session_id="s1")
    sends.clear()  # (opening it is sync: catching the read index up)
    run(agent.arun("first loop"))
    run(agent.arun("second loop"))  # a new loop: a new redis.asyncio client, the old one not reused
    session = run(db.get_session("s1", SessionType.AGENT))
    assert [r.input.input_content for r in session.runs] == ["first loop", "second loop"]
    assert {kind for kind, _ in sends} == {"async"}
    run(db.close())


def test_redis_killed_and_restarted_maps_errors_as_the_sync_path(killable_redis: RedisServer) -> None:
    url = killable_redis.url
    db, sync = AsyncEventLogDb(url), EventLogDb(url)
    agent = Agent(model=OfflineModel(), db=db, user_id="u1", session_id="s1")
    run(agent.arun("before"))
    killable_redis.kill()
    with pytest.raises(StoreUnavailable) as sync_error:
        sync.get_session("s1", SessionType.AGENT)
    with pytest.raises(StoreUnavailable) as async_error:
        run(db.get_session("s1", SessionType.AGENT))
    assert type(async_error.value) is type(sync_error.value)
    with pytest.raises(StoreUnavailable):
        run(db.upsert_session(AgentSession(session_id="s2", user_id="u1")))
    killable_redis.start()  # (AOF: the log is still there)
    run(agent.arun("after"))
    session = run(db.get_session("s1", SessionType.AGENT))
    assert [r.input.input_content for r in session.runs] == ["before", "after"]
    assert sync.get_session("s1", SessionType.AGENT) is not None


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[RedisServer]:
    need_redis_binary()
    server = RedisServer(tmp_path / "auth", extra=["--requirepass", "s3cret-pw"]).start()
    yield server
    server.kill()


def test_auth_on_the_async_client_and_no_secret_in_errors(password_redis: RedisServer,
                                                          sends: list[tuple[str, int]]) -> None:
    url = f"redis://:s3cret-pw@127.0.0.1:{password_redis.port}/0"
    db = AsyncEventLogDb(url)
    assert db.io == "redis.asyncio"
    sends.clear()
    run(Agent(model=OfflineModel(), db=db, user_id="u1", session_id="s1").arun("hello"))
    assert {kind for kind, _ in sends} == {"async"}
    assert EventLogDb(url).get_session("s1", SessionType.AGENT) is not None
    assert "s3cret" not in repr(db) and "s3cret" not in str(db.to_dict())

    with pytest.raises(StoreUnavailable) as error:
        AsyncEventLogDb(f"redis://:wrong-pw@127.0.0.1:{password_redis.port}/0")
    assert "wrong-pw" not in str(error.value)

    import redis

    admin = redis.Redis(port=password_redis.port, password="s3cret-pw")
    admin.config_set("requirepass", "n3w-pw")  # connections already made stay logged in
    admin.close()
    with pytest.raises(StoreUnavailable, match="refused the credentials") as error:
        run(db.get_session("s1", SessionType.AGENT))  # a new loop: a new asyncio client logs in, refused
    assert "s3cret" not in str(error.value) and "n3w" not in str(error.value)


def test_sync_methods_called_on_the_loop_use_their_own_connections(redis_url: str) -> None:
    """Agno calls BaseDb-only methods (components, compactions, ...) synchronously from its
    coroutines. Made on the loop's thread while coroutines hold the db's locks they must not
    wait for them: they go to a side db on the same log, and each sees the other's writes."""
    db = AsyncEventLogDb(redis_url)

    async def main() -> None:
        held = asyncio.Event()
        go = asyncio.Event()

        def hold_write_lock() -> None:
            with db.sync._write_lock:
                held.set()
                await_only(go.wait())

        task = asyncio.create_task(run_bridged(hold_write_lock))
        await held.wait()
        row = {"compaction_id": "k1", "session_id": "s1", "summary": "tea", "created_at": 1}
        db.upsert_compaction(row)  # (would deadlock on the held lock)
        go.set()
        await task
        assert db.get_compaction("k1") is not None
        assert db.sync.get_compaction("k1") is not None  # the main db catches up from the log

    run(main())
    assert db._side is not None and db._side.store is not db.sync.store
    run(db.close())


def _tls_files(where: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (ca.pem, server.pem, server.key)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False).sign(ca_key, hashes.SHA256()))
    where.mkdir(parents=True, exist_ok=True)
    paths = where / "ca.pem", where / "server.pem", where / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def _redis_has_tls() -> bool:
    """A build without TLS does not know the tls-* directives (and exits at once either way)."""
    import subprocess

    from tests.redis_server import redis_binary

    probe = subprocess.run([str(redis_binary()), "--port", "0", "--tls-cert-file", "/nonexistent"],
                           capture_output=True, timeout=30, check=False)
    return b"Bad directive" not in probe.stdout + probe.stderr


def test_rediss_with_auth_on_the_async_client(tmp_path: Path, sends: list[tuple[str, int]]) -> None:
    """rediss:// (TLS, the server's certificate checked against the URL's CA) with a password:
    the asyncio client connects as the sync one does."""
    import redis.asyncio.connection as aconn

    from tests.redis_server import free_port

    need_redis_binary()
    if not _redis_has_tls():
        pytest.skip("this redis-server was built without TLS (BUILD_TLS=yes)")
    ca, cert, key = _tls_files(tmp_path / "tls")
    tls_port = free_port()
    server = RedisServer(tmp_path / "redis", extra=[
        "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no", "--requirepass", "tls-pw"]).start()
    try:
        url = f"rediss://:tls-pw@127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}"
        db = AsyncEventLogDb(url)
        assert db.io == "redis.asyncio"
        sends.clear()
        async def main() -> Any:
            await Agent(model=OfflineModel(), db=db, user_id="u1", session_id="s1").arun("over TLS")
            return db.store.client.async_client(asyncio.get_running_loop())  # type: ignore[attr-defined]

        client = run(main())
        assert sends and {kind for kind, _ in sends} == {"async"}
        assert client.connection_pool.connection_class is aconn.SSLConnection
        session = EventLogDb(url).get_session("s1", SessionType.AGENT)
        assert [r.input.input_content for r in session.runs] == ["over TLS"]
    finally:
        server.kill()


@pytest.mark.cluster
def test_native_on_redis_cluster(cluster_url: str, sends: list[tuple[str, int]]) -> None:
    db = AsyncEventLogDb(cluster_url)
    waiting = AsyncEventLogDb(f"{cluster_url}?wait_replicas=1")  # WAIT on the slot's own node
    assert db.io == waiting.io == "redis.asyncio"
    agent = Agent(model=OfflineModel(), db=db, update_memory_on_run=True)
    sends.clear()

    async def main() -> None:
        await asyncio.gather(*(agent.arun(f"turn {i}", user_id=f"u{i % 3}", session_id=f"s{i % 5}")
                               for i in range(15)))

    run(main())
    run(Agent(model=OfflineModel(), db=waiting).arun("replicated", user_id="u0", session_id="s0"))
    assert sends and {kind for kind, _ in sends} == {"async"}
    fresh = EventLogDb(cluster_url)
    assert sum(len(s.runs or []) for s in fresh.get_sessions(session_type=SessionType.AGENT)) == 16
    assert fresh.store.verify().ok


def test_which_stores_are_served_natively(redis_url: str, tmp_path: Path) -> None:
    """Redis from a URL: natively (also rebuilt from to_dict, and a view of the past); the
    fallback store and the file store: the thread pool; `io=` forces or insists."""
    db = AsyncEventLogDb(redis_url, id="memory")
    assert db.io == "redis.asyncio" and AsyncEventLogDb.from_dict(db.to_dict()).io == "redis.asyncio"
    run(db.upsert_session(AgentSession(session_id="s1", user_id="u1")))
    first = next(iter(db.store.read("session/s1")))
    past = db.as_of(first.id)
    assert past.io == "redis.asyncio" and run(past.get_session("s1", SessionType.AGENT)) is not None
    assert AsyncEventLogDb(redis_url, io="threads").io == "threads"
    fallback = AsyncEventLogDb(store=open_store(redis_url, fallback=str(tmp_path / "fallback")))
    assert fallback.io == "threads"
    assert run(fallback.get_session("s1", SessionType.AGENT)) is not None
    with pytest.raises(ValueError, match=r"cannot be served on redis\.asyncio"):
        AsyncEventLogDb(str(tmp_path / "log"), io="redis.asyncio")
    with pytest.raises(ValueError, match="io must be"):
        AsyncEventLogDb(redis_url, io="greenlets")


def test_a_db_folding_into_its_process_is_not_bridged(redis_url: str) -> None:
    """shared_index=False folds under the projection runner's thread lock, which greenlets
    on one thread would all pass: such a db is served by threads even on a bridged store."""
    store = open_store(redis_url)
    assert store.enable_asyncio()  # type: ignore[attr-defined]
    folding = AsyncEventLogDb(db=EventLogDb(store=store, shared_index=False))
    assert folding.io == "threads"
    assert AsyncEventLogDb(db=EventLogDb(store=store)).io == "redis.asyncio"
    other = open_store(redis_url)
    before = EventLogDb(store=other)  # its locks are thread locks: made before the store was bridged
    assert other.enable_asyncio()  # type: ignore[attr-defined]
    assert AsyncEventLogDb(db=before).io == "threads"


def test_a_frozen_redis_times_out_as_on_the_sync_path(killable_redis: RedisServer) -> None:
    """SIGSTOP: redis.asyncio's read timeout is the URL's `timeout`, and it maps to the same
    StoreUnavailable as the sync client's; the loop is free meanwhile; after SIGCONT it works."""
    import os
    import signal

    url = f"{killable_redis.url}?timeout=0.5"
    db, sync = AsyncEventLogDb(url), EventLogDb(url)
    run(db.upsert_session(AgentSession(session_id="s1", user_id="u1")))
    assert killable_redis.proc is not None
    os.kill(killable_redis.proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(StoreUnavailable, match="Timeout") as sync_error:
            sync.get_session("s1", SessionType.AGENT)

        async def frozen() -> tuple[BaseException, int]:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            task = asyncio.create_task(ticker())
            try:
                await db.get_session("s1", SessionType.AGENT)
            except StoreUnavailable as exc:
                return exc, ticks
            finally:
                task.cancel()
            raise AssertionError("no error from a frozen Redis")

        error, ticks = run(frozen())
        assert type(error) is type(sync_error.value) and "Timeout" in str(error)
        assert ticks > 0  # the loop ran other coroutines while the command waited
    finally:
        os.kill(killable_redis.proc.pid, signal.SIGCONT)
    assert run(db.get_session("s1", SessionType.AGENT)) is not None


def test_a_bridged_retry_of_a_stored_append_still_waits_for_replicas(redis_url: str) -> None:
    """wait_replicas=1 with no replica: the append is stored on the primary but not confirmed
    (StoreUnavailable). Retrying it (the same event ids) answers DUP; that must still WAIT —
    after a probe write on the same connection, as WAIT only counts that connection's writes —
    and fail again, not report success for an unreplicated event."""
    from eventlog import new_event
    from eventlog.events import SessionRenamed

    store = open_store(f"{redis_url}?wait_replicas=1&timeout=0.5")
    assert store.enable_asyncio()  # type: ignore[attr-defined]
    event = new_event(SessionRenamed(session_id="s1", name="once"))

    async def append() -> Any:
        return await run_bridged(store.append, "session/s1", [event])

    for _ in range(2):
        with pytest.raises(StoreUnavailable, match="only 0 of 1 replicas"):
            run(append())
    assert [e.id for e in store.read("session/s1")] == [event.id]  # stored once
    store.close()


def test_redis_killed_while_calls_are_in_flight(killable_redis: RedisServer) -> None:
    """Kill -9 with 40 bridged calls under way: each either completes or raises
    StoreUnavailable — no other error, nothing hangs, no lock left held; after the restart
    every session can be written and read and the log verifies."""
    db = AsyncEventLogDb(killable_redis.url)

    async def one(i: int) -> Any:
        await db.upsert_session(AgentSession(session_id=f"s{i % 5}", user_id="u1", session_data={"n": i}))
        return await db.get_session(f"s{i % 5}", SessionType.AGENT)

    async def main() -> list[Any]:
        tasks = [asyncio.create_task(one(i)) for i in range(40)]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        killable_redis.kill()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = run(main())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors and all(isinstance(e, StoreUnavailable) for e in errors), {type(e) for e in errors}
    killable_redis.start()
    async def again() -> list[Any]:
        return await asyncio.gather(*(one(i) for i in range(10)))

    assert all(s is not None for s in run(again()))
    assert EventLogDb(killable_redis.url).store.verify().ok


@pytest.mark.parametrize("kind", ["redis", "cluster"])
def test_long_streams_read_bridged_as_synchronously(kind: str, request: pytest.FixtureRequest,
                                                    sends: list[tuple[str, int]]) -> None:
    """A stream longer than one script reply, others' events between: read in a bridge (its
    XRANGE spans in one asyncio pipeline) it is the same events as read by the sync client."""
    from eventlog import RunRecorded, SessionStarted, new_event

    url = request.getfixturevalue("redis_url" if kind == "redis" else "cluster_url")
    store = open_store(url)
    assert store.enable_asyncio()  # type: ignore[attr-defined]
    store.append("session/long", [new_event(SessionStarted(session_id="long"))])
    # another stream of the same partition (a cluster log has 16), so that it lies between
    other = next(f"session/o{n}" for n in range(1000)
                 if store.partition_of(f"session/o{n}") == store.partition_of("session/long"))  # type: ignore[attr-defined]
    for i in range(150):
        if i % 10 == 0:  # (more than 8 others between: a new XRANGE span)
            store.append(other, [new_event(RunRecorded(session_id=other[8:], run_id=f"o{i}-{k}", run={}))
                                 for k in range(12)])
        store.append("session/long", [new_event(RunRecorded(session_id="long", run_id=f"r{i}", run={"i": i}))])
    sync_reads = {start: list(store.read("session/long", start)) for start in (1, 40, 100, 151)}
    sync_folds = {start: [e.id for e in store.read_for_fold("session/long", start)] for start in sync_reads}
    sends.clear()

    async def bridged() -> tuple[dict[int, list[Any]], dict[int, list[str]]]:
        def reads() -> tuple[dict[int, list[Any]], dict[int, list[str]]]:
            return ({s: list(store.read("session/long", s)) for s in sync_reads},
                    {s: [e.id for e in store.read_for_fold("session/long", s)] for s in sync_reads})
        return await run_bridged(reads)

    from eventlog.stores.redis_aio import BridgedPipeline

    executed: list[int] = []
    execute = BridgedPipeline.execute

    def counted(self: BridgedPipeline, raise_on_error: bool = True) -> Any:
        executed.append(1)
        return execute(self, raise_on_error)

    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setattr(BridgedPipeline, "execute", counted)  # (a spy: it runs the real one)
    reads, folds = run(bridged())
    assert reads == sync_reads and folds == sync_folds and len(reads[1]) == 151
    assert executed  # the spans went through the asyncio pipeline
    assert sends and {k for k, _ in sends} == {"async"}
    store.close()


def test_a_long_session_read_cold_through_the_bridge_snapshots_and_reads_its_snapshot(
        redis_url: str, sends: list[tuple[str, int]]) -> None:
    """A session long enough to be snapshotted (projections.index.views.SNAPSHOT_AFTER): the
    first cold read through the bridge folds it and writes the snapshot on redis.asyncio, the
    next process's cold read starts from it; both answer as a sync EventLogDb does."""
    import redis

    from projections.index.views import SNAPSHOT_AFTER

    writer = EventLogDb(redis_url, snapshots=False)  # (a default writer leaves snapshots itself)
    agent = Agent(model=OfflineModel(), db=writer, user_id="u1", session_id="long")
    for i in range(SNAPSHOT_AFTER + 10):
        agent.run(f"turn {i}")
    assert len(list(writer.store.read("session/long"))) >= SNAPSHOT_AFTER
    want = [f"turn {i}" for i in range(SNAPSHOT_AFTER + 10)]
    raw = redis.Redis.from_url(redis_url)
    assert not list(raw.scan_iter(match="*:c:*"))  # (none yet)
    for _ in range(2):  # the first folds and snapshots, the second (a new db) starts from the snapshot
        db = AsyncEventLogDb(redis_url)
        sends.clear()
        session = run(db.get_session("long", SessionType.AGENT))
        assert [r.input.input_content for r in session.runs] == want
        assert sends and {kind for kind, _ in sends} == {"async"}
        assert list(raw.scan_iter(match="*:c:*"))
        run(db.close())
    assert [r.input.input_content for r in EventLogDb(redis_url).get_session("long", SessionType.AGENT).runs] == want


def test_two_loops_on_two_threads_share_one_db(redis_url: str) -> None:
    """One db, an event loop in each of two threads, 30 renames of one session from each at
    once: the locks exclude across loops and threads (each loop queues its own coroutines,
    the thread lock keeps the loops apart), nothing is lost and nothing hangs."""
    db = AsyncEventLogDb(redis_url)
    run(db.upsert_session(AgentSession(session_id="one", user_id="u1", agent_id="a")))
    errors: list[BaseException] = []

    def loop_in_a_thread(tag: str) -> None:
        async def renames() -> None:
            await asyncio.gather(*(db.rename_session("one", SessionType.AGENT, f"{tag} {i}") for i in range(30)))

        try:
            run(renames())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=loop_in_a_thread, args=(tag,)) for tag in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LIMIT)
    assert not errors and not any(t.is_alive() for t in threads)
    names = Counter(type(e.payload).__name__ for e in EventLogDb(redis_url).store.read("session/one"))
    assert names["SessionRenamed"] == 60 and names["SessionStarted"] == 1


def test_a_bridged_reader_catches_up_with_another_process_writes(redis_url: str,
                                                                 sends: list[tuple[str, int]]) -> None:
    """Another process writes (here a sync db with its own connections): the bridged reader
    finds the log moved and reads the index's cursors and purge mark on the loop, on
    redis.asyncio, then answers with the other's writes."""
    writer = EventLogDb(redis_url)
    reader = AsyncEventLogDb(redis_url)
    assert reader.io == "redis.asyncio" and reader.sync.indexer is not None
    writer.upsert_session(AgentSession(session_id="s1", agent_id="a", user_id="u1", runs=[]))

    async def reads() -> list[str | None]:
        seen = []
        for i in range(3):
            writer.upsert_session(AgentSession(session_id="s1", agent_id="a", user_id="u1", runs=[],
                                               session_data={"n": str(i)}))
            sends.clear()
            got = await reader.get_session("s1", SessionType.AGENT)
            assert {kind for kind, _ in sends} == {"async"}  # (on the loop, on redis.asyncio)
            seen.append(got.session_data.get("n") if got is not None and got.session_data else None)
        return seen

    assert run(reads()) == ["0", "1", "2"]
    writer.close()
