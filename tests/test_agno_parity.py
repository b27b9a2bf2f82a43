"""Behavioural parity with Agno's InMemoryDb: the same BaseDb calls on both, same results.

Tolerated differences, each for a reason:
- created_at / updated_at values: both set them from the clock at different moments, and
  InMemoryDb stores the caller's `created_at=None` when a session is updated (wiping its
  creation time) where we keep the original; so only the presence of the keys is compared.
- `session_data` keys Agno itself adds (none here) would be compared as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agno.db.base import SessionType
from agno.db.in_memory import InMemoryDb
from agno.db.schemas.evals import EvalRunRecord, EvalType
from agno.db.schemas.knowledge import KnowledgeRow
from agno.db.schemas.memory import UserMemory
from agno.models.message import Message
from agno.run.agent import RunOutput
from agno.run.base import RunStatus
from agno.session import AgentSession, TeamSession, WorkflowSession

from adapters.agno import EventLogDb

TIME_KEYS = {"created_at", "updated_at"}


def norm(value: Any) -> Any:
    """Comparable form: dicts/objects to plain data, clock values to their type."""
    if hasattr(value, "to_dict") and not isinstance(value, dict):
        value = value.to_dict()
    elif hasattr(value, "model_dump"):
        value = value.model_dump()
    if isinstance(value, dict):
        return {k: ("<time>" if k in TIME_KEYS else norm(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [norm(v) for v in value]
    return value


@pytest.fixture(params=["memory", "file", "redis"])
def dbs(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[InMemoryDb, EventLogDb]:
    url = {"memory": "memory://", "file": str(tmp_path / "log")}.get(request.param)
    if url is None:
        url = str(request.getfixturevalue("redis_url"))
    return InMemoryDb(), EventLogDb(url)


def both(dbs: tuple[InMemoryDb, EventLogDb], method: str, *args: Any, **kwargs: Any) -> Any:
    ref, ours = dbs
    expected = getattr(ref, method)(*args, **kwargs)
    got = getattr(ours, method)(*args, **kwargs)
    assert norm(got) == norm(expected), f"{method}{args}{kwargs}"
    return got


def run(run_id: str, session_id: str, agent: str = "planner", status: RunStatus = RunStatus.completed) -> RunOutput:
    return RunOutput(run_id=run_id, agent_id=agent, session_id=session_id, user_id="alice", status=status,
                     content=f"content of {run_id}", messages=[Message(role="user", content=f"q {run_id}")])


def test_sessions_and_runs(dbs: tuple[InMemoryDb, EventLogDb]) -> None:
    sessions = [
        AgentSession(session_id="a1", agent_id="planner", user_id="alice", session_data={"session_state": {"x": 1},
                     "session_name": "First"}, metadata={"m": 1}, created_at=100),
        AgentSession(session_id="a2", agent_id="coder", user_id="bob", session_data={"session_name": "Second"},
                     created_at=200),
        TeamSession(session_id="t1", team_id="crew", user_id="alice", created_at=300),
        WorkflowSession(session_id="w1", workflow_id="deploy", user_id="alice", created_at=400),
    ]
    for s in sessions:
        both(dbs, "upsert_session", s)
    for i in range(4):
        both(dbs, "upsert_run", run(f"r{i}", "a1"), session_id="a1", user_id="alice", run_index=i)
    both(dbs, "upsert_run", run("r1", "a1", status=RunStatus.error), session_id="a1", user_id="alice", run_index=9)
    both(dbs, "upsert_run", run("x", "missing"), session_id="missing")  # unknown session: skipped
    both(dbs, "get_session", "a1", SessionType.AGENT)
    both(dbs, "get_session", "a1", user_id="alice", deserialize=False)
    both(dbs, "get_session", "a1", user_id="mallory")
    both(dbs, "get_session", "a1", runs_limit=2, deserialize=False)
    both(dbs, "get_session", "t1", SessionType.TEAM)
    both(dbs, "get_session", "w1", SessionType.WORKFLOW, deserialize=False)
    both(dbs, "get_session", "nope")
    for kwargs in ({}, {"user_id": "alice"}, {"session_type": SessionType.AGENT},
                   {"component_id": "crew", "session_type": SessionType.TEAM}, {"component_id": "coder"},
                   {"session_name": "sec"}, {"start_timestamp": 150, "end_timestamp": 350},
                   {"sort_by": "created_at", "sort_order": "asc"}, {"sort_by": "created_at", "limit": 2, "page": 2},
                   {"include_runs": False}, {"deserialize": False}, {"deserialize": False, "limit": 1, "page": 3}):
        both(dbs, "get_sessions", **kwargs)
    both(dbs, "rename_session", "a1", SessionType.AGENT, "Renamed")
    both(dbs, "rename_session", "a1", SessionType.AGENT, "Nope", user_id="bob")
    both(dbs, "get_session", "a1", deserialize=False)
    # owner guard: another user cannot overwrite an owned session
    both(dbs, "upsert_session", AgentSession(session_id="a1", agent_id="planner", user_id="mallory"))
    # state change, summary, metadata change are all reflected
    updated = AgentSession(session_id="a2", agent_id="coder", user_id="bob",
                           session_data={"session_state": {"k": "v"}, "session_name": "Second"}, metadata={"n": 2})
    both(dbs, "upsert_session", updated, deserialize=False)
    both(dbs, "get_session", "a2", deserialize=False)
    both(dbs, "get_run", "r2", deserialize=False)
    both(dbs, "get_run", "r2")
    both(dbs, "get_run", "nope")
    for kwargs in ({}, {"session_id": "a1"}, {"agent_id": "planner", "status": RunStatus.error},
                   {"sort_by": "run_id", "sort_order": "desc"}, {"limit": 2, "page": 2}, {"deserialize": False}):
        both(dbs, "get_runs", **kwargs)
    both(dbs, "delete_run", "r3")
    both(dbs, "delete_run", "r3")
    both(dbs, "delete_runs", ["r0", "nope"])
    both(dbs, "get_session", "a1", deserialize=False)
    both(dbs, "delete_session", "a2", user_id="alice")  # not the owner
    both(dbs, "delete_session", "a2")
    both(dbs, "delete_sessions", ["t1", "w1"], user_id="alice")
    both(dbs, "get_sessions", deserialize=False)


def test_memories(dbs: tuple[InMemoryDb, EventLogDb]) -> None:
    memories = [UserMemory(memory=f"fact {i}", memory_id=f"m{i}", user_id=["alice", "bob"][i % 2],
                           topics=[["food"], ["tools", "work"], []][i % 3], agent_id=["planner", "coder"][i % 2],
                           team_id="crew" if i % 4 == 0 else None, input=f"said {i}", created_at=1000 + i)
                for i in range(8)]
    for m in memories:
        both(dbs, "upsert_user_memory", m, deserialize=False)
    both(dbs, "upsert_user_memory", UserMemory(memory="fact 3 changed", memory_id="m3", user_id="bob",
                                               topics=["work"], created_at=1003))
    both(dbs, "get_user_memory", "m3")
    both(dbs, "get_user_memory", "m3", user_id="alice")
    both(dbs, "get_user_memory", "m2", deserialize=False)
    for kwargs in ({}, {"user_id": "alice"}, {"agent_id": "coder"}, {"team_id": "crew"}, {"topics": ["work"]},
                   {"search_content": "CHANGED"}, {"sort_by": "memory", "sort_order": "asc"},
                   {"sort_by": "memory", "limit": 3, "page": 2}, {"deserialize": False, "user_id": "bob"}):
        both(dbs, "get_user_memories", **kwargs)
    ref, ours = dbs
    assert sorted(ours.get_all_memory_topics()) == sorted(ref.get_all_memory_topics())
    assert sorted(ours.get_all_memory_topics(user_id="bob")) == sorted(ref.get_all_memory_topics(user_id="bob"))
    got, expected = ours.get_user_memory_stats(), ref.get_user_memory_stats()
    assert [(s["user_id"], s["total_memories"]) for s in got[0]] == [(s["user_id"], s["total_memories"])
                                                                     for s in expected[0]] and got[1] == expected[1]
    both(dbs, "delete_user_memory", "m1", user_id="alice")  # wrong owner: nothing
    both(dbs, "delete_user_memory", "m1")
    both(dbs, "delete_user_memories", ["m2", "m4"], user_id="alice")
    both(dbs, "get_user_memories", deserialize=False)
    both(dbs, "upsert_memories", [UserMemory(memory="bulk", memory_id="b1", user_id="carol")], deserialize=False)
    both(dbs, "clear_memories")
    both(dbs, "get_user_memories", deserialize=False)


def test_knowledge_evals_and_versions(dbs: tuple[InMemoryDb, EventLogDb]) -> None:
    for i in range(4):
        both(dbs, "upsert_knowledge_content", KnowledgeRow(id=f"k{i}", name=f"doc {i}", description="d",
                                                           user_id=None if i % 2 else "alice", linked_to="x" if i else None))
    both(dbs, "get_knowledge_content", "k1")
    both(dbs, "get_knowledge_content", "k2", user_id="bob")
    both(dbs, "get_knowledge_contents", user_id="alice")
    both(dbs, "get_knowledge_contents", linked_to="x", sort_by="name", sort_order="asc", limit=2, page=1)
    both(dbs, "delete_knowledge_content", "k0", user_id="bob")
    both(dbs, "delete_knowledge_content", "k1")
    both(dbs, "get_knowledge_contents")
    for i in range(3):
        both(dbs, "create_eval_run", EvalRunRecord(run_id=f"e{i}", eval_type=EvalType.ACCURACY, eval_data={"score": i},
                                                   agent_id="planner" if i else None, name=f"eval {i}"))
    both(dbs, "get_eval_run", "e1")
    both(dbs, "get_eval_runs", deserialize=False, sort_by="name", sort_order="asc")
    both(dbs, "rename_eval_run", "e2", "better name")
    both(dbs, "delete_eval_runs", ["e0"])
    both(dbs, "get_eval_runs", agent_id="planner")
    both(dbs, "upsert_schema_version", "agno_sessions", "2.5.0")
    both(dbs, "get_latest_schema_version", "agno_sessions")
    both(dbs, "get_latest_schema_version", "agno_memories")


def test_thread_pool_memory_writes_all_land(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    db = EventLogDb(str(tmp_path / "log"))

    def write(n: int) -> None:
        for i in range(50):
            db.upsert_user_memory(UserMemory(memory=f"{n}-{i}", memory_id=f"{n}-{i}", user_id=f"u{n % 3}"))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))
    assert len(db.get_user_memories()) == 400
    assert db.store.verify().ok
    db.close()


def test_read_errors_raise(tmp_path: Path) -> None:
    from tests.redis_server import RedisServer

    server = RedisServer(tmp_path / "r").start()
    db = EventLogDb(server.url)
    db.upsert_session(AgentSession(session_id="s", agent_id="a", user_id="u"))
    server.kill()
    # Agno needs any read failure to raise, never to look like "no such row"
    with pytest.raises(Exception):
        db.get_session("s")
    with pytest.raises(Exception):
        db.get_user_memories(user_id="u")


def rich_run(i: int, session_id: str) -> RunOutput:
    """A run with the parts Agno's from_dict rebuilds: messages with metrics, run metrics,
    metadata and session state (nested dicts a shared read model would leak through)."""
    from agno.metrics import MessageMetrics, RunMetrics

    return RunOutput(
        run_id=f"r{i}", agent_id="planner", session_id=session_id, user_id="alice", content=f"answer {i}",
        status=RunStatus.error if i == 2 else RunStatus.completed, metadata={"turn": i, "tags": ["a", "b"]},
        session_state={"step": i, "nested": {"k": [i]}}, metrics=RunMetrics(input_tokens=i, output_tokens=2 * i),
        messages=[Message(role="user", content=f"q {i}"),
                  Message(role="assistant", content=f"a {i}", metrics=MessageMetrics(input_tokens=i))],
    )


@pytest.mark.parametrize("kind", ["memory", "file", "redis"])
def test_cold_get_session_gives_agno_the_same_objects(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A new EventLogDb on existing data (snapshot or full fold) returns the AgentSession
    InMemoryDb returns for the same writes: a plain list of the same RunOutput types, equal
    field by field. Reading twice with an empty run cache proves Agno's from_dict (which pops
    keys from the dicts it is given) consumed copies, not the read model."""
    url = {"memory": "memory://", "file": str(tmp_path / "log")}.get(kind)
    if url is None:
        url = str(request.getfixturevalue("redis_url"))
    ref, ours = InMemoryDb(), EventLogDb(url)
    runs = [rich_run(i, "s") for i in range(6)]
    again = rich_run(1, "s")
    for db in (ref, ours):
        db.upsert_session(AgentSession(session_id="s", agent_id="planner", user_id="alice",
                                       session_data={"session_state": {"n": 1}}, created_at=100))
        for i, r in enumerate(runs):
            db.upsert_run(r, session_id="s", user_id="alice", run_index=i)
        db.upsert_run(again, session_id="s", user_id="alice")  # replaced in place
        db.delete_run("r4")
    expected = ref.get_session("s", SessionType.AGENT)
    assert isinstance(expected, AgentSession) and expected.runs is not None
    ours.close()

    reopened = [EventLogDb(store=ours.store, snapshots=False)] if kind == "memory" else [
        EventLogDb(url), EventLogDb(url, snapshots=False)]
    for cold in reopened:
        for _ in range(2):
            cold._run_cache.clear()
            got = cold.get_session("s", SessionType.AGENT, user_id="alice")
            assert isinstance(got, AgentSession) and type(got.runs) is list
            assert [type(r) for r in got.runs] == [type(r) for r in expected.runs]
            assert [[type(m) for m in r.messages or []] for r in got.runs] == \
                   [[type(m) for m in r.messages or []] for r in expected.runs]
            assert got.runs == expected.runs  # dataclass equality: every field, nested models too
            assert norm(got) == norm(expected)
        plain = cold.get_session("s", SessionType.AGENT, deserialize=False)
        assert isinstance(plain, dict)
        plain["runs"][0]["messages"].clear()  # the caller's own dicts: the read model is untouched
        assert cold.get_session("s", SessionType.AGENT, deserialize=False)["runs"][0]["messages"]
        cold.close()


def test_run_reads_hand_out_the_callers_own_dicts(dbs: tuple[InMemoryDb, EventLogDb]) -> None:
    """get_run / get_runs / get_session(deserialize=False) give dicts the caller may change
    without changing what the next read returns (the read model's own dicts never leave)."""
    ref, ours = dbs
    r0 = rich_run(0, "s")
    for db in (ref, ours):
        db.upsert_session(AgentSession(session_id="s", agent_id="planner", user_id="alice"))
        db.upsert_run(r0, session_id="s", user_id="alice", run_index=0)
    for read in (lambda db: db.get_run("r0", deserialize=False),
                 lambda db: db.get_runs(session_id="s", deserialize=False)[0][0],
                 lambda db: db.get_session("s", deserialize=False)["runs"][0]):
        first = read(ours)
        first["messages"].clear()
        first["metadata"]["turn"] = "changed"
        assert norm(read(ours)) == norm(read(ref))
