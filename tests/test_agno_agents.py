"""Real Agno Agent, Team and Workflow runs (offline model) on EventLogDb, on every store:
history in context, memories, session state, restart in a new process, audit, as_of, fork."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from agno.agent import Agent
from agno.db.base import SessionType
from agno.team import Team
from agno.workflow import Step, Workflow
from agno.workflow.types import StepInput, StepOutput

from adapters.agno import EventLogDb, OfflineModel
from projections.audit import audit

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["memory", "file", "redis"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "file":
        return str(tmp_path / "log")
    return str(request.getfixturevalue("redis_url"))


def agent(db: EventLogDb, name: str = "planner", **kw: object) -> Agent:
    return Agent(name=name, id=name, model=OfflineModel(id=name), db=db, add_history_to_context=True,
                 update_memory_on_run=True, add_memories_to_context=True, **kw)  # type: ignore[arg-type]


def test_agent_history_memories_and_state(db_url: str) -> None:
    db = EventLogDb(db_url)
    a = agent(db, session_state={"visits": 0})
    first = a.run("Hi! Remember that I prefer green tea.", session_id="s1", user_id="alice")
    assert "start of our conversation" in str(first.content)
    second = a.run("What do you know about me?", session_id="s1", user_id="alice")
    assert "Earlier in this session (1 messages)" in str(second.content)  # history reached the model
    assert "I prefer green tea" in str(second.content)  # the memory came back from the db
    memories = db.get_user_memories(user_id="alice")
    assert [m.memory for m in memories] == ["I prefer green tea"]  # type: ignore[union-attr]
    assert memories[0].agent_id == "planner"  # type: ignore[union-attr]
    session = db.get_session("s1", user_id="alice")
    assert session is not None and len(session.runs or []) == 2
    assert session.session_data["session_state"] == {"visits": 0}  # type: ignore[index]
    assert db.get_session("s1", user_id="mallory") is None  # owner guard
    # every event names its writer; runs carry their run id
    runs = [e for e in db.store.read_all() if e.type == "run.recorded"]
    assert {e.actor.agent_id for e in runs} == {"planner"}
    assert {e.actor.run_id for e in runs} == {first.run_id, second.run_id}
    assert all(e.actor.user_id == "alice" for e in runs)
    assert db.store.verify().ok
    db.close()


def test_team_shares_one_memory_and_audit_names_each_agent(db_url: str) -> None:
    db = EventLogDb(db_url)
    planner, coder = agent(db, "planner"), agent(db, "coder")
    team = Team(name="crew", id="crew", members=[planner, coder], model=OfflineModel(id="crew"), db=db,
                add_history_to_context=True)
    out = team.run("Ship a hello world. Remember that I use vim.", session_id="t1", user_id="bob")
    assert "offline" not in str(out.content) or "planner" in str(out.content)
    written = {e.actor.agent_id for e in audit(db.store, user_id="bob") if e.type == "run.recorded"}
    assert {"planner", "coder"} <= written
    assert {e.actor.agent_id for e in audit(db.store, agent_id="coder")} == {"coder"}
    memories = db.get_user_memories(user_id="bob")
    assert memories and {m.memory for m in memories} == {"I use vim"}  # type: ignore[union-attr]
    # the memory names the member that wrote it, and the log agrees
    writers = {m.agent_id for m in memories}  # type: ignore[union-attr]
    assert writers <= {"planner", "coder"}
    assert {e.actor.agent_id for e in audit(db.store, user_id="bob") if e.type == "memory.added"} == writers
    team_session = db.get_session("t1")
    assert type(team_session).__name__ == "TeamSession"
    db.close()


def _count_step(step_input: StepInput, run_context) -> StepOutput:  # type: ignore[no-untyped-def]
    state = run_context.session_state
    state["steps_done"] = state.get("steps_done", 0) + 1
    return StepOutput(content=f"counted {state['steps_done']}")


def test_workflow_keeps_session_state(db_url: str) -> None:
    db = EventLogDb(db_url)
    coder = Agent(name="coder", id="coder", model=OfflineModel(id="coder"))
    wf = Workflow(name="deploy", id="deploy", db=db, session_state={},
                  steps=[Step(name="count", executor=_count_step), Step(name="code", agent=coder)])
    wf.run("build", session_id="w1", user_id="carol")
    wf.run("build again", session_id="w1", user_id="carol")
    session = db.get_session("w1")
    assert type(session).__name__ == "WorkflowSession"
    assert session.session_data["session_state"]["steps_done"] == 2  # type: ignore[union-attr,index]
    assert len(session.runs or []) == 2  # type: ignore[union-attr]
    assert {e.actor.workflow_id for e in db.store.read_all() if e.type == "run.recorded"} == {"deploy"}
    db.close()


def test_as_of_before_turn_two_shows_one_run_and_fork_continues(tmp_path: Path) -> None:
    db = EventLogDb(str(tmp_path / "log"))
    a = agent(db)
    a.run("turn one", session_id="s1", user_id="dan")
    first_run_event = [e for e in db.store.read_all() if e.type == "run.recorded"][-1]
    a.run("turn two", session_id="s1", user_id="dan")
    past = db.as_of(first_run_event.id)
    then = past.get_session("s1")
    assert then is not None and len(then.runs or []) == 1
    assert len(db.get_session("s1").runs or []) == 2  # type: ignore[union-attr]
    with pytest.raises(Exception, match="read-only"):
        past.upsert_session(then)  # type: ignore[arg-type]
    # an agent pointed at the past sees one earlier turn
    ghost = Agent(name="planner", id="planner", model=OfflineModel(id="planner"), db=past, add_history_to_context=True)
    reply = ghost.run("what did I say?", session_id="s1", user_id="dan")
    assert "Earlier in this session (1 messages) you said: 'turn one'" in str(reply.content)
    # fork from turn one: the new session carries on with only that turn
    forked = db.fork_session("s1", at=first_run_event.id, new_session_id="s1-b")
    reply = a.run("and now?", session_id=forked, user_id="dan")
    assert "Earlier in this session (1 messages) you said: 'turn one'" in str(reply.content)
    assert len(db.get_session("s1").runs or []) == 2  # type: ignore[union-attr]  # original untouched
    db.close()


RESTART_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from agno.agent import Agent
    from adapters.agno import EventLogDb, OfflineModel
    url, text = sys.argv[1], sys.argv[2]
    db = EventLogDb(url)
    a = Agent(name="planner", id="planner", model=OfflineModel(id="planner"), db=db, add_history_to_context=True,
              num_history_runs=10)
    out = a.run(text, session_id="resume-me", user_id="erin")
    print(json.dumps({"content": out.content, "runs": len(db.get_session("resume-me").runs)}))
    db.close()
    """
)


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_restart_in_new_process_continues_with_full_history(kind: str, tmp_path: Path,
                                                             request: pytest.FixtureRequest) -> None:
    url = str(tmp_path / "log") if kind == "file" else str(request.getfixturevalue("redis_url"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def turn(text: str) -> dict[str, object]:
        done = subprocess.run([sys.executable, "-c", RESTART_SCRIPT, url, text], capture_output=True, text=True,
                              env=env, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    for i in range(3):
        assert turn(f"message {i}")["runs"] == i + 1
    fourth = turn("where were we?")
    assert fourth["runs"] == 4
    assert "Earlier in this session (3 messages) you said: 'message 0'" in str(fourth["content"])


NO_CLOSE_SCRIPT = textwrap.dedent(
    """
    import sys
    from agno.agent import Agent
    from adapters.agno import EventLogDb, OfflineModel
    db = EventLogDb(sys.argv[1], shared_index=sys.argv[2] == "index")
    a = Agent(name="planner", id="planner", model=OfflineModel(id="planner"), db=db, add_history_to_context=True)
    for i in range(3):
        a.run(f"turn {i}", session_id="no-close", user_id="fay")
    # no db.close(): Agno never calls it
    """
)


@pytest.mark.parametrize("kind", ["file", "redis"])
@pytest.mark.parametrize("read_side", ["index", "in-process"])
def test_a_process_that_never_closes_its_db_leaves_its_read_models_for_the_next_start(
        kind: str, read_side: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Agno never closes its db. With the shared index, the index is up to date when the
    process exits, so the next start folds nothing; with in-process read models, they are
    snapshotted at exit, so the next start loads them and folds only what came after."""
    from eventlog import open_store
    from projections import ProjectionRunner, all_projections
    from projections.index import Indexer, open_index

    url = str(tmp_path / "log") if kind == "file" else str(request.getfixturevalue("redis_url"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", NO_CLOSE_SCRIPT, url, read_side], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    store = open_store(url)
    try:
        end = store.last_position()
        assert end.get(0) > 0
        if read_side == "index":
            index = open_index(store)
            assert index is not None
            assert index.cursors() == end.offsets  # nothing left to fold
            assert Indexer(store, index).catch_up() == 0
            db = EventLogDb(store=store)
            session = db.get_session("no-close", SessionType.AGENT)
            assert session is not None and len(session.runs) == 3
            index.close()
            return
        runner = ProjectionRunner(store, all_projections())  # loads the snapshots
        assert all(cursor == end for cursor in runner.cursors.values())  # nothing left to fold
        assert runner.catch_up() == 0
        assert len(runner.states["conversation"].sessions["no-close"].runs) == 3
    finally:
        store.close()
