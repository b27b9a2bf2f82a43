"""Crypto-shredding: remember facts for two users, forget one; the other is untouched, the log
still verifies, and it all holds after a restart — on the file store and on Redis."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from adapters.agno import EventLogDb
from eventlog import Actor, RunRecorded, UserMemoryAdded, new_event, open_store
from eventlog.crypto import ERASED, FileKeyStore
from eventlog.encrypted import EncryptedStore
from eventlog.names import session_stream, user_stream
from projections import ProjectionRunner, all_projections, query_memories


@pytest.fixture(params=["file", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "log") if request.param == "file" else str(request.getfixturevalue("redis_url"))


def remember(store, user: str, text: str, memory_id: str) -> None:  # type: ignore[no-untyped-def]
    store.append(user_stream(user), [new_event(UserMemoryAdded(memory_id=memory_id, user_id=user, memory=text),
                                               actor=Actor(agent_id="planner", user_id=user))])


def memories(store) -> dict[str, object]:  # type: ignore[no-untyped-def]
    runner = ProjectionRunner(store, all_projections(), use_snapshots=False)
    runner.catch_up()
    rows, _ = query_memories(runner.states["memories"])
    return {r.memory_id: r.memory for r in rows}


def test_forget_one_user_keeps_the_other_and_the_proof(url: str) -> None:
    store = open_store(url, encrypt=True)
    assert isinstance(store, EncryptedStore)
    remember(store, "alice", "alice's card ends 4242", "m-a")
    remember(store, "bob", "bob likes chess", "m-b")
    store.append(session_stream("s1"), [new_event(RunRecorded(session_id="s1", run_id="r1",
                                                              run={"content": "secret answer", "status": "ok"}),
                                                  actor=Actor(user_id="alice", session_id="s1"))])
    assert memories(store) == {"m-a": "alice's card ends 4242", "m-b": "bob likes chess"}
    # what is stored is ciphertext: the raw log never shows the plain text
    raw = [e for e in store.read_all_raw()]
    assert all("card ends" not in str(e.payload) and "secret answer" not in str(e.payload) for e in raw)
    store.forget_user("alice", reason="GDPR request")
    assert memories(store) == {"m-a": ERASED, "m-b": "bob likes chess"}
    run = next(store.read(session_stream("s1")))
    assert run.payload.run["content"] == ERASED and run.payload.run["status"] == "ok"  # type: ignore[union-attr]
    assert store.verify().ok
    assert any(e.type == "user.forgotten" for e in store.read(user_stream("alice")))
    store.close()
    # restart: a new process state sees the same
    again = open_store(url, encrypt=True)
    assert memories(again) == {"m-a": ERASED, "m-b": "bob likes chess"}
    assert again.verify().ok
    again.close()


def test_live_read_models_follow_an_erasure(tmp_path: Path) -> None:
    db = EventLogDb(store=open_store(str(tmp_path / "log"), encrypt=True))
    from agno.db.schemas.memory import UserMemory

    db.upsert_user_memory(UserMemory(memory="alice secret", user_id="alice", memory_id="m1"))
    db.upsert_user_memory(UserMemory(memory="bob fact", user_id="bob", memory_id="m2"))
    assert db.get_user_memory("m1").memory == "alice secret"  # type: ignore[union-attr]
    db.forget_user("alice")
    assert db.get_user_memory("m1").memory == ERASED  # type: ignore[union-attr]
    assert db.get_user_memory("m2").memory == "bob fact"  # type: ignore[union-attr]


def test_encryption_is_off_by_default_and_env_turns_it_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not isinstance(open_store(str(tmp_path / "a")), EncryptedStore)
    monkeypatch.setenv("EVENTLOG_ENCRYPT", "1")
    monkeypatch.setenv("EVENTLOG_KEY_DIR", str(tmp_path / "keys"))
    store = open_store(str(tmp_path / "b"))
    assert isinstance(store, EncryptedStore) and isinstance(store.keys, FileKeyStore)
    remember(store, "carol", "x", "m1")
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in (tmp_path / "keys").iterdir())
    assert not (tmp_path / "b" / "keys").exists()  # keys apart from the log


def test_ciphertext_cannot_be_moved_to_another_event(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "log"), encrypt=True)
    remember(store, "dan", "dan's secret", "m1")
    remember(store, "dan", "other", "m2")
    first, second = list(store.inner.read(user_stream("dan")))  # type: ignore[attr-defined]
    moved = second.payload.__class__(**{**{f: getattr(second.payload, f) for f in second.payload.__struct_fields__},
                                        "memory": first.payload.memory})  # type: ignore[union-attr]
    import msgspec

    forged = msgspec.structs.replace(second, payload=moved)
    assert store.decrypt(forged).payload.memory == ERASED  # type: ignore[union-attr]


# --- what an erasure leaves behind, and the key stores ----------------------------------------


def test_agno_sessions_and_memories_load_after_an_erasure(url: str) -> None:
    """Erased run messages must not break Agno's loaders, and memories Agno writes (with an
    `input`, a str field a ciphertext does not fit) must decrypt, before and after."""
    from agno.agent import Agent

    from adapters.agno import OfflineModel

    db = EventLogDb(store=open_store(url, encrypt=True))
    agent = Agent(name="p", id="p", model=OfflineModel(id="p"), db=db, add_history_to_context=True,
                  update_memory_on_run=True, add_memories_to_context=True, session_state={"city": "Lyon"})
    agent.run("Hi! Remember that I prefer green tea.", session_id="s1", user_id="alice")
    agent.run("Hello, remember that I play chess.", session_id="s2", user_id="bob")
    assert [m.memory for m in db.get_user_memories(user_id="alice")] == ["I prefer green tea"]  # type: ignore[union-attr]
    db.forget_user("alice")
    session = db.get_session("s1", user_id="alice")
    assert session is not None and session.runs
    assert session.runs[0].content == ERASED and not session.runs[0].messages  # erased list -> []
    assert session.session_data["session_state"] == {"city": ERASED}  # type: ignore[index]
    assert [m.memory for m in db.get_user_memories(user_id="alice")] == [ERASED]  # type: ignore[union-attr]
    later = agent.run("What do you know about me?", session_id="s1", user_id="alice")
    assert "green tea" not in str(later.content) and "start of our conversation" in str(later.content)
    bob = db.get_session("s2", user_id="bob")
    assert bob is not None and "chess" in str(bob.runs[0].messages)  # type: ignore[index]
    assert [m.memory for m in db.get_user_memories(user_id="bob")] == ["I play chess"]  # type: ignore[union-attr]
    assert db.store.verify().ok
    db.close()


def test_erased_values_keep_their_shape(tmp_path: Path) -> None:
    from eventlog import SessionStateChanged

    store = open_store(str(tmp_path / "log"), encrypt=True)
    values = {"name": "Eve", "tags": ["a"], "prefs": {"tea": True}, "age": 41, "vip": True}
    store.append(session_stream("s1"), [new_event(SessionStateChanged(session_id="s1", set=values),
                                                  actor=Actor(user_id="eve"))])
    assert next(store.read(session_stream("s1"))).payload.set == values  # type: ignore[union-attr]
    store.forget_user("eve")
    erased = next(store.read(session_stream("s1"))).payload.set  # type: ignore[union-attr]
    assert erased == {"name": ERASED, "tags": [], "prefs": {}, "age": None, "vip": None}


def test_a_user_seen_again_gets_a_new_key_and_the_old_data_stays_erased(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "log"), encrypt=True)
    remember(store, "fay", "old secret", "m1")
    store.forget_user("fay")
    remember(store, "fay", "new fact", "m2")
    assert memories(store) == {"m1": ERASED, "m2": "new fact"}
    assert store.verify().ok


def test_data_written_before_encryption_was_on_stays_plain(tmp_path: Path) -> None:
    plain = open_store(str(tmp_path / "log"))
    remember(plain, "gus", "written in clear", "m1")
    plain.close()
    store = open_store(str(tmp_path / "log"), encrypt=True)
    remember(store, "gus", "written encrypted", "m2")
    store.forget_user("gus")
    # the memories read model hides everything of a forgotten user...
    assert memories(store) == {"m1": ERASED, "m2": ERASED}
    # ...but only what was encrypted is shredded: the clear text is still in the log
    # (docs/security.md says so: turn encryption on before personal data is written)
    stored = [str(e.payload) for e in store.read(user_stream("gus"))]
    assert "written in clear" in stored[0] and "written encrypted" not in "".join(stored)


def test_file_key_store_races_crashes_and_destroy(tmp_path: Path) -> None:
    import threading

    from eventlog.crypto import KEY_BYTES

    keys_dir = tmp_path / "keys"
    got: list[bytes] = []
    stores = [FileKeyStore(keys_dir) for _ in range(8)]  # separate instances: separate locks, like processes
    threads = [threading.Thread(target=lambda s=s: got.append(s.get_or_create("ann"))) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1 and len(got[0]) == KEY_BYTES
    assert [p.name for p in keys_dir.iterdir() if not p.name.endswith(".key")] == []  # no temp files left
    files = list(keys_dir.iterdir())
    assert len(files) == 1 and "ann" not in files[0].name and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    # a crash in the middle of destroy leaves a zeroed file: it is no key, and is replaced
    files[0].write_bytes(b"\0" * KEY_BYTES)
    assert stores[0].get("ann") is None
    fresh = stores[0].get_or_create("ann")
    assert fresh != got[0] and fresh != b"\0" * KEY_BYTES
    assert stores[1].destroy("ann") and not files[0].exists() and stores[2].get("ann") is None
    assert not stores[3].destroy("ann")


def test_redis_keys_live_in_their_own_key_space(redis_url: str) -> None:
    import redis

    store = open_store(redis_url, encrypt=True)
    remember(store, "hal", "hal's fact", "m1")
    client = redis.Redis.from_url(redis_url)
    key_names = [k.decode() for k in client.keys("*") if b"key:" in k]
    assert len(key_names) == 1 and key_names[0].startswith("el-keys:key:") and "hal" not in key_names[0]
    store.forget_user("hal")
    assert not client.exists(key_names[0])
    assert memories(store) == {"m1": ERASED}
