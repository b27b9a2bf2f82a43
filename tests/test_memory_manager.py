"""The memory-manager facade of the original design, on the event log: the fallback chain
from the settings, user memory, session ids, workflow state, conversation logging and the
AgentFactory — with restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.agno import AgentFactory
from adapters.memory_manager import MemoryPatterns, MemorySettings, get_memory_manager
from eventlog.fallback import FallbackStore
from projections.audit import audit


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "MEMORY_DIR", "USE_MEMORY", "EVENTLOG_OFFLINE", "PAYREADY_OFFLINE_MODE",
                 "EVENTLOG_URL", "EVENTLOG_ENCRYPT"):
        monkeypatch.delenv(name, raising=False)


def test_backend_chosen_from_settings_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              redis_url: str) -> None:
    assert get_memory_manager({"memory_dir": str(tmp_path / "m")}).backend == "file"
    assert get_memory_manager(MemorySettings(memory_dir=str(tmp_path / "m"), use_memory=False)).backend == "memory"
    redis_manager = get_memory_manager({"redis_url": redis_url, "memory_dir": str(tmp_path / "r")})
    assert redis_manager.backend == "redis" and isinstance(redis_manager.store, FallbackStore)
    monkeypatch.setenv("MEMORY_DIR", str(tmp_path / "env"))
    assert get_memory_manager().backend == "file"
    monkeypatch.setenv("PAYREADY_OFFLINE_MODE", "1")
    assert get_memory_manager().backend == "memory"
    monkeypatch.delenv("PAYREADY_OFFLINE_MODE")
    monkeypatch.setenv("EVENTLOG_OFFLINE", "true")
    assert get_memory_manager().backend == "memory"
    monkeypatch.delenv("EVENTLOG_OFFLINE")
    monkeypatch.setenv("USE_MEMORY", "0")
    assert get_memory_manager().backend == "memory"


def test_redis_down_still_remembers_through_the_file_fallback(tmp_path: Path) -> None:
    manager = get_memory_manager({"redis_url": "redis://127.0.0.1:1/0", "memory_dir": str(tmp_path)})
    manager.user_memory.remember("k", "v", category="crm")
    assert manager.user_memory.recall("k") == "v"
    assert manager.store.degraded  # type: ignore[attr-defined]
    manager.close()


def test_user_memory_remember_recall_forget_and_history(tmp_path: Path) -> None:
    manager = get_memory_manager({"memory_dir": str(tmp_path)})
    memory = manager.user_memory
    memory.remember("customer_123", "VIP, prefers email, annual contract", category="crm")
    memory.remember("editor", "vim", category="tools", agent_id="coder")
    memory.remember("customer_123", "VIP, prefers phone", category="crm")  # replaces the value
    assert memory.recall("customer_123") == "VIP, prefers phone"
    assert memory.recall("missing", default="?") == "?"
    assert memory.recall_all() == {"customer_123": "VIP, prefers phone", "editor": "vim"}
    assert memory.recall_all(category="tools") == {"editor": "vim"}
    assert memory.recall("editor", user_id="someone-else") is None
    # the old value is kept in the log, next to who changed it
    updates = [e for e in manager.store.read_all() if e.type == "memory.updated"]
    assert len(updates) == 1 and updates[0].payload.old_memory == "VIP, prefers email, annual contract"  # type: ignore[union-attr]
    assert memory.forget("editor") and not memory.forget("editor")
    assert memory.recall("editor") is None
    manager.close()
    again = get_memory_manager({"memory_dir": str(tmp_path)})  # restart
    assert again.user_memory.recall_all() == {"customer_123": "VIP, prefers phone"}
    again.close()


def test_session_ids_workflow_state_and_conversation_survive_restart(tmp_path: Path) -> None:
    manager = get_memory_manager({"memory_dir": str(tmp_path)})
    assert manager.load_session_id() is None
    manager.save_session_id("payready-20250919-abc123")
    manager.save_session_id("other", key="nightly")
    MemoryPatterns.save_workflow_state(manager, session_id="session-123", workflow="deployment",
                                       state={"step": 3, "total": 5})
    for step in (1, 2, 3):
        MemoryPatterns.complete_step(manager, session_id="session-123", workflow="deployment", step=step,
                                     name=f"step {step}", total=5, agent_id="coder")
    manager.log_conversation("session-123", "user", "deploy it", agent_id="planner")
    manager.log_conversation("session-123", "assistant", "deploying", agent_id="coder")
    manager.close()
    again = get_memory_manager({"memory_dir": str(tmp_path)})
    assert again.load_session_id() == "payready-20250919-abc123"
    assert again.load_session_id("nightly") == "other"
    assert MemoryPatterns.load_workflow_state(again, session_id="session-123", workflow="deployment") == {
        "step": 3, "total": 5}
    row = MemoryPatterns.workflow(again, session_id="session-123", workflow="deployment")
    assert row is not None and row.next_step == 4 and not row.done
    assert MemoryPatterns.load_workflow_state(again, session_id="nope", workflow="deployment") is None
    conversation = again.get_conversation("session-123")
    assert [(m["role"], m["content"], m["agent_id"]) for m in conversation] == [
        ("user", "deploy it", "planner"), ("assistant", "deploying", "coder")]
    again.close()


def test_agent_factory_team_shares_memory_and_attributes_each_agent(tmp_path: Path) -> None:
    manager = get_memory_manager({"memory_dir": str(tmp_path), "user_id": "alice"})
    factory = AgentFactory(manager)
    analyst = factory.create_agent(name="analyst", role="business analyst", use_memory=True)
    writer = factory.create_agent(name="writer", role="writes reports")
    loner = factory.create_agent(name="loner", use_memory=False)
    assert loner.db is None and analyst.db is writer.db
    team = factory.create_team(agents=[analyst, writer], share_memory=True)
    team.run("Summarise the quarter. Remember that I prefer bullet points.")
    session_id = factory.session_id
    runs_by = {e.actor.agent_id for e in audit(manager.store, session_id=session_id) if e.type == "run.recorded"}
    assert {"analyst", "writer"} <= runs_by
    memories = manager.db.get_user_memories(user_id="alice")
    assert memories and {m.memory for m in memories} == {"I prefer bullet points"}  # type: ignore[union-attr]
    manager.close()
    # after a restart the factory resumes the same session
    again = get_memory_manager({"memory_dir": str(tmp_path), "user_id": "alice"})
    assert AgentFactory(again).session_id == session_id
    again.close()
