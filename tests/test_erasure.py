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
    assert all("4242" not in str(e.payload) and "secret answer" not in str(e.payload) for e in raw)
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
