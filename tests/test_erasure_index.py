"""An encrypted log on the shared index: reads cost what they ask for (no process folds the
log), and `forget_user` purges the derived copies — the index is rebuilt from the log, equals a
fresh fold, serves the erased form to every reader, and no longer holds the forgotten user's
plain text anywhere in its storage (SQLite file, its write-ahead log and cached snapshots;
Redis keys) — on the file store and on a real redis-server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from agno.db.base import SessionType
from agno.db.schemas.memory import UserMemory
from agno.models.message import Message
from agno.run.agent import RunOutput
from agno.session import AgentSession
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.agno import EventLogDb
from eventlog import open_store
from eventlog.crypto import ERASED
from projections.index import open_index
from projections.index.base import DECRYPTED_REDIS_BASE, DECRYPTED_SQLITE_NAME, INDEX_SCHEMA
from projections.index.check import index_differences
from projections.index.views import SNAPSHOT_AFTER


@pytest.fixture(params=["file", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "log") if request.param == "file" else str(request.getfixturevalue("redis_url"))


def encrypted_db(url: str, tmp_path: Path, **kwargs: Any) -> EventLogDb:
    return EventLogDb(store=open_store(url, encrypt=True, key_dir=str(tmp_path / "keys")), **kwargs)


def write_session(db: EventLogDb, user: str, session_id: str, secret: str, runs: int) -> None:
    session = AgentSession(session_id=session_id, agent_id="planner", user_id=user,
                           session_data={"session_state": {"note": f"{secret} state"}}, runs=[])
    db.upsert_session(session)
    for i in range(runs):
        run = RunOutput(run_id=f"{session_id}-r{i}", agent_id="planner", session_id=session_id, user_id=user,
                        content=f"{secret} answer {i}",
                        messages=[Message(role="user", content=f"{secret} question {i}")])
        db.upsert_run(run=run, session_id=session_id, user_id=user, run_index=i)


def stored_bytes_of_file_index(log: Path) -> bytes:
    """Every byte the decrypted index keeps on disk: the database, its WAL, cached snapshots."""
    found = b""
    for path in sorted(log.rglob("*")):
        if path.is_file() and path.name.startswith(DECRYPTED_SQLITE_NAME):
            found += path.read_bytes()
    return found


def stored_values_of_redis_index(url: str) -> bytes:
    """Every value under the decrypted index's keys, read by type."""
    import redis

    client = redis.Redis.from_url(url)
    found = b""
    for key in client.scan_iter(match=f"*:rm{INDEX_SCHEMA}{DECRYPTED_REDIS_BASE}:*"):
        kind = client.type(key)
        if kind == b"string":
            found += client.get(key) or b""
        elif kind == b"hash":
            found += b"".join(k + v for k, v in client.hgetall(key).items())
        elif kind == b"zset":
            found += b"".join(client.zrange(key, 0, -1))
        elif kind == b"set":
            found += b"".join(client.smembers(key))
        elif kind == b"list":
            found += b"".join(client.lrange(key, 0, -1))
    client.close()
    return found


def index_holds(url: str, text: str) -> bool:
    needle = text.encode()
    if url.startswith("redis"):
        return needle in stored_values_of_redis_index(url)
    return needle in stored_bytes_of_file_index(Path(url))


def test_an_encrypted_log_reads_from_its_own_shared_index(url: str, tmp_path: Path) -> None:
    writer = encrypted_db(url, tmp_path)
    assert writer.indexer is not None and not writer.runner.projections  # nothing folded in the process
    write_session(writer, "alice", "s1", "alice-secret", 3)
    writer.upsert_user_memory(UserMemory(memory="alice-secret fact", user_id="alice", memory_id="m1"))
    # a second process on the same log reads the index, folding nothing itself
    reader = encrypted_db(url, tmp_path)
    assert reader.indexer is not None and not reader.runner.projections
    session = reader.get_session("s1", SessionType.AGENT, user_id="alice")
    assert isinstance(session, AgentSession) and [r.content for r in session.runs or []][-1] == "alice-secret answer 2"
    assert reader.get_user_memory("m1").memory == "alice-secret fact"  # type: ignore[union-attr]
    # the same log read without its keys has another index, which holds no plain text
    plain_store = open_store(url)
    plain_index = open_index(plain_store)
    secret_index = open_index(writer.store)
    assert plain_index is not None and secret_index is not None and plain_index.where != secret_index.where
    assert index_holds(url, "alice-secret")  # (the check below can see plain text when it is there)
    plain_index.close()
    secret_index.close()
    plain_store.close()
    writer.close()
    reader.close()


def test_forget_user_purges_the_shared_index(url: str, tmp_path: Path) -> None:
    db = encrypted_db(url, tmp_path)
    # a long session, so its conversation is kept as a snapshot in the index too
    write_session(db, "alice", "s1", "alice-secret", SNAPSHOT_AFTER // 2 + 8)
    write_session(db, "bob", "s2", "bob-secret", 2)
    db.upsert_user_memory(UserMemory(memory="alice-secret fact", user_id="alice", memory_id="m1"))
    db.upsert_user_memory(UserMemory(memory="bob-secret fact", user_id="bob", memory_id="m2"))
    other = encrypted_db(url, tmp_path)  # another process, which read alice's session before
    assert other.get_session("s1", SessionType.AGENT).runs  # type: ignore[union-attr]
    cold = encrypted_db(url, tmp_path, cache_mb=1)
    assert "alice-secret" in str(cold.get_session("s1", SessionType.AGENT, deserialize=False))
    assert index_holds(url, "alice-secret")

    db.forget_user("alice", reason="GDPR request")

    assert not index_holds(url, "alice-secret")  # no derived copy left in the index's storage
    assert index_holds(url, "bob-secret")
    index = open_index(db.store)
    assert index is not None
    assert index_differences(db.store, index) == []  # the index is a fresh fold of the log
    index.close()
    for reader in (db, encrypted_db(url, tmp_path)):  # this process, and one started after the erasure
        session = reader.get_session("s1", SessionType.AGENT, user_id="alice")
        assert isinstance(session, AgentSession) and session.runs
        assert {r.content for r in session.runs} == {ERASED} and not any(r.messages for r in session.runs)
        assert session.session_data["session_state"] == {"note": ERASED}  # type: ignore[index]
        assert reader.get_user_memory("m1").memory == ERASED  # type: ignore[union-attr]
        assert reader.get_user_memory("m2").memory == "bob-secret fact"  # type: ignore[union-attr]
        bob = reader.get_session("s2", SessionType.AGENT, user_id="bob")
        assert isinstance(bob, AgentSession) and bob.runs and bob.runs[-1].content == "bob-secret answer 1"
    # a process that had read the session before: its rows come from the purged index
    assert other.get_user_memory("m1").memory == ERASED  # type: ignore[union-attr]
    page, total = other.get_sessions(session_type=SessionType.AGENT, deserialize=False)  # type: ignore[misc]
    assert total == 2 and "alice-secret" not in str([p for p in page if p["session_id"] == "s1"])
    assert db.store.verify().ok
    # the erasure holds for a writer who goes on: new data of alice is hers again, under a new key
    db.upsert_user_memory(UserMemory(memory="alice new fact", user_id="alice", memory_id="m3"))
    assert encrypted_db(url, tmp_path).get_user_memory("m3").memory == "alice new fact"  # type: ignore[union-attr]
    db.close()


def test_shared_index_false_keeps_an_encrypted_log_in_the_process(tmp_path: Path) -> None:
    db = encrypted_db(str(tmp_path / "log"), tmp_path, shared_index=False)
    assert db.indexer is None and db.runner.projections
    write_session(db, "carol", "s1", "carol-secret", 2)
    db.forget_user("carol")
    assert {r.content for r in db.get_session("s1", SessionType.AGENT).runs} == {ERASED}  # type: ignore[union-attr]
    assert not any(p.name.startswith(DECRYPTED_SQLITE_NAME) for p in (tmp_path / "log").rglob("*"))


users = st.sampled_from(["ann", "ben", "cat"])
ops = st.lists(st.tuples(st.sampled_from(["memory", "run", "state", "forget"]), users, st.integers(0, 3)),
               min_size=1, max_size=14)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops)
def test_the_index_equals_a_fresh_fold_through_random_erasures(tmp_path_factory: pytest.TempPathFactory,
                                                              ops: list[tuple[str, str, int]]) -> None:
    """Random writes and erasures of three users (file store): after every erasure the index
    equals a fresh fold of the log, and a forgotten user's plain text is nowhere in it."""
    where = tmp_path_factory.mktemp("erase")
    db = encrypted_db(str(where / "log"), where)
    written: dict[str, set[str]] = {}
    for n, (op, user, k) in enumerate(ops):
        text = f"{user}-plain-{n}."
        if op == "memory":
            db.upsert_user_memory(UserMemory(memory=text, user_id=user, memory_id=f"{user}-m{k}"))
        elif op == "run":
            write_session(db, user, f"{user}-s{k}", text, 1)
        elif op == "state":
            db.upsert_session(AgentSession(session_id=f"{user}-s{k}", agent_id="planner", user_id=user,
                                           session_data={"session_state": {"v": text}}))
        else:
            db.forget_user(user)
            index = open_index(db.store)
            assert index is not None
            assert index_differences(db.store, index) == []
            index.close()
            stored = stored_bytes_of_file_index(where / "log")
            assert not any(t.encode() in stored for t in written.get(user, ()))
            written[user] = set()
            continue
        written.setdefault(user, set()).add(text)
    index = open_index(db.store)
    assert index is not None
    assert index_differences(db.store, index) == []
    index.close()
    db.close()


def test_an_erasure_whose_purge_did_not_run_is_purged_at_the_next_open(url: str, tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """The key destroyed and `user.forgotten` appended, then the process died before the
    rebuild (here: `forget_user` of a store no EventLogDb is registered with — a script with
    the bare store API — which purges nothing): the index still holds the plain text, and the
    next EventLogDb to open the log finds the erasure unpurged, says so, and purges it."""
    db = encrypted_db(url, tmp_path)
    write_session(db, "dora", "s1", "dora-secret", 3)
    db.upsert_user_memory(UserMemory(memory="dora-secret fact", user_id="dora", memory_id="m1"))
    bare = open_store(url, encrypt=True, key_dir=str(tmp_path / "keys"))
    bare.forget_user("dora")  # type: ignore[attr-defined]
    bare.close()
    db.get_user_memory("m1")  # this process folds the erasure into the index...
    assert index_holds(url, "dora-secret")  # ...which still holds what it had decrypted
    with caplog.at_level("WARNING", logger="adapters.agno"):
        after = encrypted_db(url, tmp_path)
    assert "not followed by its purge" in caplog.text
    assert not index_holds(url, "dora-secret")
    assert after.get_user_memory("m1").memory == ERASED  # type: ignore[union-attr]
    assert {r.content for r in after.get_session("s1", SessionType.AGENT).runs} == {ERASED}  # type: ignore[union-attr]
    caplog.clear()
    with caplog.at_level("WARNING", logger="adapters.agno"):
        encrypted_db(url, tmp_path).close()  # purged once: the next open rebuilds nothing
    assert "not followed by its purge" not in caplog.text
    after.close()
    db.close()


def test_store_forget_user_purges_for_every_db_on_that_store(url: str, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """A team's dbs share one store object: the store's own `forget_user` (the documented
    store API) purges the index once and every db on it serves the erased form at once."""
    store = open_store(url, encrypt=True, key_dir=str(tmp_path / "keys"))
    first, second = EventLogDb(store=store), EventLogDb(store=store)
    write_session(first, "eli", "s1", "eli-secret", 2)
    assert second.get_session("s1", SessionType.AGENT).runs[-1].content == "eli-secret answer 1"  # type: ignore[union-attr]
    store.forget_user("eli")  # type: ignore[attr-defined]
    assert not index_holds(url, "eli-secret")
    for db in (first, second):
        assert {r.content for r in db.get_session("s1", SessionType.AGENT).runs} == {ERASED}  # type: ignore[union-attr]
        assert db.indexer is not None and not db.indexer.needs_purge()
    with caplog.at_level("WARNING", logger="adapters.agno"):
        EventLogDb(store=store).close()
    assert "not followed by its purge" not in caplog.text
    store.close()


def test_the_memory_facade_on_an_encrypted_log_purges_too(url: str, tmp_path: Path) -> None:
    """The facade reads the same index; the store's `forget_user` with only a facade open
    purges it, and the facade's cached conversation of the user goes with it."""
    from adapters.memory_manager import MemoryManager

    store = open_store(url, encrypt=True, key_dir=str(tmp_path / "keys"))
    manager = MemoryManager(store, user_id="finn")
    manager.user_memory.remember("card", "finn-secret card")
    manager.log_conversation("s1", "user", "finn-secret question")
    assert manager.user_memory.recall("card") == "finn-secret card"
    assert "finn-secret question" in str(manager.get_conversation("s1"))
    assert index_holds(url, "finn-secret")
    store.forget_user("finn")  # type: ignore[attr-defined]
    assert not index_holds(url, "finn-secret")
    assert manager.user_memory.recall("card") == ERASED
    assert "finn-secret" not in str(manager.get_conversation("s1"))
    manager.close()


@pytest.mark.cluster
def test_an_erasure_on_redis_cluster_purges_every_partitions_index(cluster_url: str, tmp_path: Path) -> None:
    """On a cluster the decrypted index lives under each partition's hash tag (`rm<schema>d`);
    an erasure rebuilds every partition's and leaves it equal to a fresh fold."""
    db = encrypted_db(cluster_url, tmp_path)
    assert db.indexer is not None and db.indexer.index.partitions > 1
    for i in range(12):
        write_session(db, ["gil", "hana"][i % 2], f"c{i}", f"{['gil', 'hana'][i % 2]}-secret {i}", 1)
    assert len({p for p, pos in db.indexer.index.cursors().items() if pos > 0}) > 1  # spread over partitions
    db.forget_user("gil")
    index = open_index(db.store)
    assert index is not None and index_differences(db.store, index) == []
    index.close()
    for i in range(12):
        runs = db.get_session(f"c{i}", SessionType.AGENT).runs  # type: ignore[union-attr]
        assert runs is not None and (runs[0].content == ERASED) == (i % 2 == 0)
    client = db.store.inner.client  # type: ignore[attr-defined]  (the store's own RedisCluster client)
    values = b""
    for key in client.scan_iter(match=f"*:rm{INDEX_SCHEMA}{DECRYPTED_REDIS_BASE}:*"):
        kind = client.type(key)
        if kind == b"hash":
            values += b"".join(client.hvals(key))
        elif kind == b"string":
            values += client.get(key) or b""
    assert b"hana-secret" in values  # (the check sees plain text where there is some)
    assert b"gil-secret" not in values
    db.close()


def test_eventlog_reindex_on_an_encrypted_log_is_a_purge(tmp_path: Path) -> None:
    """With EVENTLOG_ENCRYPT=1 the CLI works on the decrypted index: `reindex --check` compares
    it with a fresh fold, and `reindex` purges an erasure a dead process left unpurged (so the
    next EventLogDb has nothing left to do)."""
    import json
    import os
    import subprocess
    import sys

    log, keys = tmp_path / "log", tmp_path / "keys"
    db = encrypted_db(str(log), tmp_path)
    write_session(db, "ivy", "s1", "ivy-secret", 2)
    db.close()
    bare = open_store(str(log), encrypt=True, key_dir=str(keys))
    bare.forget_user("ivy")  # type: ignore[attr-defined]  (no db registered: nothing purged)
    bare.close()
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "EVENTLOG_ENCRYPT": "1", "EVENTLOG_KEY_DIR": str(keys)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "adapters.cli", "--url", str(log), *args], capture_output=True,
                              text=True, env=env, timeout=120, check=False)

    checked = run("reindex", "--check", "--json")  # the unpurged rows differ from a fresh fold (erased there)
    assert checked.returncode == 1, checked.stderr
    report = json.loads(checked.stdout)
    assert DECRYPTED_SQLITE_NAME in report["index"] and any("'s1'" in d for d in report["differences"])
    assert index_holds(str(log), "ivy-secret")
    rebuilt = run("reindex", "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert not index_holds(str(log), "ivy-secret")
    assert run("reindex", "--check").returncode == 0
    after = encrypted_db(str(log), tmp_path)
    assert after.indexer is not None and not after.indexer.needs_purge()
    assert {r.content for r in after.get_session("s1", SessionType.AGENT).runs} == {ERASED}  # type: ignore[union-attr]
    after.close()


# --- REDIS_URL with EVENTLOG_ENCRYPT=1: the primary's decrypted index, through an outage ---------


def encrypted_fallback_db(url: str, fallback: Path, keys: Path) -> EventLogDb:
    from eventlog.crypto import FileKeyStore
    from eventlog.encrypted import EncryptedStore
    from eventlog.fallback import FallbackStore
    from eventlog.jsonl import JsonlStore
    from eventlog.redis_store import RedisStreamStore

    inner = FallbackStore(RedisStreamStore.from_url(url), JsonlStore(fallback), health_interval=0.1)
    db = EventLogDb(store=EncryptedStore(inner, FileKeyStore(keys)))
    db._owns_store = True
    return db


def decrypted_index_equals_a_fresh_fold(db: EventLogDb) -> None:
    from projections.index.fallback_reads import fallback_primary

    primary = fallback_primary(db.store)
    index = open_index(primary)
    assert primary is not None and index is not None and DECRYPTED_REDIS_BASE in index.where
    assert index_differences(primary, index) == []
    index.close()


def test_redis_url_encrypted_reads_the_decrypted_index_and_an_erasure_purges_it(redis_url: str,
                                                                                 tmp_path: Path) -> None:
    url = f"{redis_url}?prefix=encfb"
    db = encrypted_fallback_db(url, tmp_path / "a", tmp_path / "keys")
    assert db._fallback is not None and not db.runner.projections  # the shared index, no fold here
    write_session(db, "jo", "s1", "jo-secret", 2)
    write_session(db, "kim", "s2", "kim-secret", 1)
    other = encrypted_fallback_db(url, tmp_path / "b", tmp_path / "keys")  # another host, same keys
    assert other.get_session("s1", SessionType.AGENT).runs[-1].content == "jo-secret answer 1"  # type: ignore[union-attr]
    assert index_holds(redis_url, "jo-secret")
    db.forget_user("jo")
    assert not index_holds(redis_url, "jo-secret") and index_holds(redis_url, "kim-secret")
    for reader in (db, other):
        assert {r.content for r in reader.get_session("s1", SessionType.AGENT).runs} == {ERASED}  # type: ignore[union-attr]
        assert reader.get_session("s2", SessionType.AGENT).runs[0].content == "kim-secret answer 0"  # type: ignore[union-attr]
    decrypted_index_equals_a_fresh_fold(db)
    other.close()
    db.close()


def test_an_erasure_while_redis_is_away_is_purged_once_it_is_back(killable_redis: Any, tmp_path: Path) -> None:
    """The key is destroyed at once and the erasure waits in the file; meanwhile the outage fold
    is rebuilt without what the process had read, so nothing of the user is served; once Redis
    is back and the file replayed, the index is purged."""
    db = encrypted_fallback_db(killable_redis.url, tmp_path / "fb", tmp_path / "keys")
    write_session(db, "lu", "s1", "lu-secret", 2)
    write_session(db, "max", "s2", "max-secret", 1)
    assert db.get_session("s1", SessionType.AGENT).runs  # type: ignore[union-attr]  (read: seeded in an outage)
    killable_redis.kill()
    db.forget_user("lu")  # the erasure goes to the file; the index cannot be purged yet
    assert "lu-secret" not in str(db.get_session("s1", SessionType.AGENT, deserialize=False))
    assert db._fallback is not None and db._fallback.degraded  # (that read found Redis away)
    killable_redis.start()
    deadline = time.monotonic() + 15
    while db.store.pending() or db.store.unreachable:  # type: ignore[attr-defined]  (the health thread replays)
        assert time.monotonic() < deadline, "the fallback file was not replayed"
        time.sleep(0.05)
    assert {r.content for r in db.get_session("s1", SessionType.AGENT).runs} == {ERASED}  # type: ignore[union-attr]
    assert not db._fallback.degraded
    assert not index_holds(killable_redis.url, "lu-secret") and index_holds(killable_redis.url, "max-secret")
    decrypted_index_equals_a_fresh_fold(db)
    db.close()
