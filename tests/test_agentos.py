"""A real `agno.os.AgentOS` app over EventLogDb and AsyncEventLogDb, driven through its HTTP
routes (httpx's ASGI transport), on the memory, file and Redis stores, against the same app
over Agno's SqliteDb / AsyncSqliteDb: agent runs, sessions, runs, memories and learnings answer
alike; a new app on the same file or Redis lists what the first one wrote; control-plane
routes say what to do instead of failing.
"""

from __future__ import annotations

import asyncio
import inspect
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from agno.agent import Agent
from agno.db.base import AsyncBaseDb, BaseDb
from agno.db.sqlite import AsyncSqliteDb, SqliteDb

from adapters.agno import AsyncEventLogDb, EventLogDb, OfflineModel
from adapters.agno.async_db import delegated_methods

warnings.filterwarnings("ignore", message="Duplicate Operation ID")


def make_app(db: Any) -> Any:
    from agno.os import AgentOS

    agent = Agent(id="assistant", name="Assistant", model=OfflineModel(), db=db, update_memory_on_run=True,
                  add_history_to_context=True)
    return AgentOS(id="os", agents=[agent], db=db, telemetry=False).get_app()


def call(app: Any, script: Callable[[httpx.AsyncClient], Any]) -> Any:
    async def main() -> Any:
        transport = httpx.ASGITransport(app=app)
        # the app's lifespan runs as under uvicorn (AgentOS provisions its dbs there)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport,
                                                                       base_url="http://agentos") as client:
            return await script(client)

    return asyncio.run(main())


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (response.request.url, response.status_code, response.text[:300])
    return response.json() if response.content else None


async def write_scenario(c: httpx.AsyncClient) -> None:
    """What users of the app do: talk, rename, remember, learn, forget."""
    for message, user, session in (("I like green tea", "u1", "s1"), ("and biscuits", "u1", "s1"),
                                   ("hello there", "u2", "s2"), ("a third chat", "u1", "s3")):
        body = ok(await c.post("/agents/assistant/runs",
                               data={"message": message, "user_id": user, "session_id": session, "stream": "false"}))
        assert body["content"].startswith("[offline]")
    ok(await c.post("/sessions/s1/rename", json={"session_name": "Tea talk"}, params={"type": "agent"}))
    ok(await c.post("/memories", json={"memory": "Works nights", "user_id": "u2", "topics": ["work"]}))
    for body in ({"learning_type": "user_profile", "user_id": "u1", "content": {"name": "Ann", "drink": "tea"}},
                 {"learning_type": "user_profile", "user_id": "u2", "content": {"name": "Bo"}},
                 {"learning_type": "session_context", "user_id": "u1", "session_id": "s1",
                  "content": {"summary": "tea preferences"}}):
        ok(await c.post("/learnings", json=body), 201)
    ok(await c.post("/learnings", json=body), 409)  # the same identity again
    listed = ok(await c.get("/learnings", params={"user_id": "u2"}))["data"]
    ok(await c.patch(f"/learnings/{listed[0]['learning_id']}", json={"content": {"name": "Bo", "shift": "night"}}))
    ok(await c.delete("/sessions/s3"), 204)


async def read_scenario(c: httpx.AsyncClient) -> dict[str, Any]:
    """What the app shows, reduced to what must match between databases (ids the agent makes
    up, times and token counts differ from run to run)."""
    out: dict[str, Any] = {}
    sessions = ok(await c.get("/sessions", params={"type": "agent"}))
    out["sessions"] = sorted((s["session_id"], s["session_name"]) for s in sessions["data"])
    out["sessions_total"] = sessions["meta"]["total_count"]
    u1 = ok(await c.get("/sessions", params={"type": "agent", "user_id": "u1"}))
    out["sessions_u1"] = sorted(s["session_id"] for s in u1["data"])
    detail = ok(await c.get("/sessions/s1", params={"type": "agent"}))
    out["s1"] = (detail["session_id"], detail["session_name"], detail.get("user_id"), detail.get("agent_id"))
    runs = ok(await c.get("/sessions/s1/runs", params={"type": "agent"}))
    out["s1_runs"] = [(r["run_input"], r["content"], r.get("status")) for r in runs]
    run = ok(await c.get(f"/sessions/s1/runs/{runs[0]['run_id']}", params={"type": "agent"}))
    out["s1_first_run"] = (run["run_id"] == runs[0]["run_id"], run["content"])
    ok(await c.get("/sessions/s3", params={"type": "agent"}), 404)
    memories = ok(await c.get("/memories"))
    out["memories"] = sorted((m["memory"], tuple(m.get("topics") or ()), m["user_id"]) for m in memories["data"])
    out["memory_topics"] = sorted(ok(await c.get("/memory_topics")))
    stats = ok(await c.get("/user_memory_stats"))
    out["memory_users"] = sorted((s["user_id"], s["total_memories"]) for s in stats["data"])
    learnings = ok(await c.get("/learnings"))
    # sorted: rows written within one second tie on updated_at (the order is held to SqliteDb's
    # under a controlled clock in test_agno_memory_surface.py)
    out["learnings"] = sorted((r["learning_id"], r["learning_type"], r["user_id"], r["session_id"],
                               sorted(r["content"].items())) for r in learnings["data"])
    out["learnings_total"] = learnings["meta"]["total_count"]
    u1_learnings = ok(await c.get("/learnings", params={"user_id": "u1", "learning_type": "user_profile"}))
    out["learnings_u1"] = [r["content"] for r in u1_learnings["data"]]
    first = ok(await c.get("/learnings/user_profile_u2"))
    out["learning_by_id"] = first["content"]
    users = ok(await c.get("/learnings/users"))
    out["learning_users"] = sorted(u["user_id"] for u in users["data"])
    # metrics: refreshed from the sessions and runs, then read back (ids, times and tokens differ)
    ok(await c.post("/metrics/refresh"))
    days = ok(await c.get("/metrics"))["metrics"]
    out["metrics"] = sorted((d["agent_runs_count"], d["agent_sessions_count"], d["team_runs_count"],
                             d["team_sessions_count"], d["workflow_runs_count"], d["workflow_sessions_count"],
                             d["users_count"], sorted((m["model_id"], m["model_provider"], m["count"])
                                                      for m in d.get("model_metrics") or []))
                            for d in days)
    return out


def write_and_read(db: Any) -> dict[str, Any]:
    app = make_app(db)

    async def script(c: httpx.AsyncClient) -> dict[str, Any]:
        await write_scenario(c)
        return await read_scenario(c)

    result: dict[str, Any] = call(app, script)
    return result


def read_only(db: Any) -> dict[str, Any]:
    result: dict[str, Any] = call(make_app(db), read_scenario)
    return result


@pytest.fixture(scope="module")
def sqlite_answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The reference: the same scenario on Agno's SqliteDb and AsyncSqliteDb."""
    root = tmp_path_factory.mktemp("sqlite")
    sync = write_and_read(SqliteDb(db_file=str(root / "sync.db")))
    async_ = write_and_read(AsyncSqliteDb(db_file=str(root / "async.db")))
    return {"sync": sync, "async": async_}


def url_for(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "file":
        return str(tmp_path / "log")
    return str(request.getfixturevalue("redis_url"))


def make_db(flavour: str, url: str) -> Any:
    return EventLogDb(url) if flavour == "sync" else AsyncEventLogDb(url)


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("kind", ["memory", "file", "redis"])
def test_agentos_answers_as_over_sqlite(kind: str, flavour: str, tmp_path: Path, request: pytest.FixtureRequest,
                                        sqlite_answers: dict[str, dict[str, Any]]) -> None:
    db = make_db(flavour, url_for(kind, tmp_path, request))
    got = write_and_read(db)
    assert got == sqlite_answers[flavour]
    assert got == sqlite_answers["sync"]  # and the async reference agrees with the sync one
    assert got["learning_users"] == ["u1", "u2"] and got["learnings_total"] == 3
    assert got["sessions"] == [("s1", "Tea talk"), ("s2", "hello there")]


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("kind", ["file", "redis"])
def test_a_new_app_on_the_same_log_lists_the_same(kind: str, flavour: str, tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    url = url_for(kind, tmp_path, request)
    first = make_db(flavour, url)
    before = write_and_read(first)
    (first.sync if flavour == "async" else first).close()
    # a new process would open the log afresh: a new db, a new app; and the other flavour too
    assert read_only(make_db(flavour, url)) == before
    assert read_only(make_db("async" if flavour == "sync" else "sync", url)) == before


def test_sync_and_async_dbs_serve_one_log_interchangeably(tmp_path: Path) -> None:
    """Two apps on one log at once, one over each db (AgentOS closes its dbs at shutdown, so
    the listing apps get dbs of their own)."""
    url = str(tmp_path / "log")
    sync_app, async_app = make_app(EventLogDb(url)), make_app(AsyncEventLogDb(url))

    async def both_apps() -> None:
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agentos")
                   for app in (sync_app, async_app)]
        async with sync_app.router.lifespan_context(sync_app), async_app.router.lifespan_context(async_app):
            for client, message, session in zip(clients, ("from sync", "from async"), ("a", "b")):
                ok(await client.post("/agents/assistant/runs",
                                     data={"message": message, "user_id": "u", "session_id": session,
                                           "stream": "false"}))
            for client in clients:
                listed = ok(await client.get("/sessions", params={"type": "agent"}))
                assert sorted(s["session_id"] for s in listed["data"]) == ["a", "b"]
            for client in clients:
                await client.aclose()

    asyncio.run(both_apps())
    kinds = {type(e.payload).__name__ for e in EventLogDb(url).store.read("session/b")}
    assert {"SessionStarted", "RunRecorded"} <= kinds  # the async db wrote the same events


def test_control_plane_routes_name_the_feature_and_the_way_out() -> None:
    db = EventLogDb("memory://")
    app = make_app(db)

    async def script(c: httpx.AsyncClient) -> list[httpx.Response]:
        return [await c.get(p) for p in ("/approvals", "/schedules", "/service-accounts")]

    for response in call(app, script):
        assert response.status_code == 503 and "not supported" in response.text


def test_control_plane_on_a_separate_db_memory_in_the_log(tmp_path: Path) -> None:
    """The way out the error names: AgentOS's own db for its tables, the agents' memory in the
    log, selected with ?db_id=."""
    from agno.os import AgentOS

    memory = EventLogDb(str(tmp_path / "log"), id="memory")
    agent = Agent(id="assistant", model=OfflineModel(), db=memory)
    app = AgentOS(agents=[agent], db=SqliteDb(db_file=str(tmp_path / "os.db"), id="control"),
                  telemetry=False).get_app()

    async def script(c: httpx.AsyncClient) -> list[httpx.Response]:
        await c.post("/agents/assistant/runs", data={"message": "hi", "user_id": "u", "session_id": "s", "stream": "false"})
        return [await c.get("/approvals"), await c.get("/schedules"),
                await c.get("/sessions", params={"db_id": "memory", "type": "agent"}),
                await c.get("/learnings", params={"db_id": "memory"})]

    approvals, schedules, sessions, learnings = call(app, script)
    assert approvals.status_code == 200 and schedules.status_code == 200
    assert [s["session_id"] for s in ok(sessions)["data"]] == ["s"]
    assert ok(learnings)["meta"]["total_count"] == 0
    assert [s.session_id for s in EventLogDb(str(tmp_path / "log")).get_sessions()] == ["s"]


# --- AsyncEventLogDb's method list ------------------------------------------------------------

def test_async_db_has_every_method_of_agnos_db_interfaces() -> None:
    db = AsyncEventLogDb("memory://")
    assert isinstance(db, AsyncBaseDb) and not AsyncEventLogDb.__abstractmethods__
    kinds = delegated_methods()
    for name in (n for n, v in inspect.getmembers(AsyncBaseDb) if not n.startswith("_") and callable(v)):
        declared = getattr(AsyncBaseDb, name)
        mine = getattr(AsyncEventLogDb, name)
        assert mine is not declared, f"{name} falls through to AsyncBaseDb"
        assert inspect.iscoroutinefunction(mine) == inspect.iscoroutinefunction(declared), name
    for name in (n for n, v in inspect.getmembers(BaseDb) if not n.startswith("_") and callable(v)):
        assert hasattr(db, name), name
        if not hasattr(AsyncBaseDb, name):  # Agno calls these synchronously even on an async db
            assert kinds[name] == "sync" and not inspect.iscoroutinefunction(getattr(db, name)), name


def test_async_db_does_not_block_the_loop(tmp_path: Path) -> None:
    """While a db call holds the write lock in its worker thread, the loop keeps running."""
    db = AsyncEventLogDb(str(tmp_path / "log"))

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.create_task(ticker())
        with db.sync._write_lock:  # a long write elsewhere: our call must wait for it off the loop
            call = asyncio.create_task(db.delete_learning("nothing"))
            await asyncio.sleep(0.2)
            assert not call.done()
        assert await call is False
        task.cancel()
        return ticks

    assert asyncio.run(main()) >= 10


def test_async_agent_arun_records_the_same_events(tmp_path: Path) -> None:
    db = AsyncEventLogDb(str(tmp_path / "log"))
    agent = Agent(model=OfflineModel(), db=db, user_id="u1", session_id="s1", update_memory_on_run=True)

    async def main() -> None:
        await agent.arun("I like tea")
        await agent.arun("and coffee")

    asyncio.run(main())
    session = EventLogDb(str(tmp_path / "log")).get_session("s1")
    assert session is not None and len(session.runs) == 2
    assert asyncio.run(db.get_user_memories(user_id="u1"))
    first = next(iter(db.store.read("session/s1")))
    past = db.as_of(first.id)
    assert past.read_only and asyncio.run(past.get_session("s1")).runs in (None, [])


def _count_step(step_input: Any, run_context: Any) -> Any:
    from agno.workflow import StepOutput

    state = run_context.session_state
    state["steps_done"] = state.get("steps_done", 0) + 1
    return StepOutput(content=f"counted {state['steps_done']}")


def team_and_workflow(db: Any) -> dict[str, Any]:
    """A team and a two-step workflow served by AgentOS: run each twice, then list and read."""
    from agno.os import AgentOS
    from agno.team import Team
    from agno.workflow import Step, Workflow

    member = Agent(id="coder", name="coder", model=OfflineModel(id="coder"), db=db)
    team = Team(id="crew", name="crew", members=[member], model=OfflineModel(id="lead"), db=db)
    flow = Workflow(id="deploy", name="deploy", db=db, session_state={},
                    steps=[Step(name="count", executor=_count_step),
                           Step(name="code", agent=Agent(id="builder", model=OfflineModel(id="b")))])
    app = AgentOS(id="os", agents=[member], teams=[team], workflows=[flow], db=db, telemetry=False).get_app()

    async def script(c: httpx.AsyncClient) -> dict[str, Any]:
        for message in ("plan it", "and ship it"):
            ok(await c.post("/teams/crew/runs", data={"message": message, "user_id": "u", "session_id": "t1",
                                                      "stream": "false"}))
            ok(await c.post("/workflows/deploy/runs", data={"message": message, "user_id": "u", "session_id": "w1",
                                                            "stream": "false"}))
        out: dict[str, Any] = {}
        for kind, sid in (("team", "t1"), ("workflow", "w1")):
            listed = ok(await c.get("/sessions", params={"type": kind}))
            out[kind] = [s["session_id"] for s in listed["data"]]
            runs = ok(await c.get(f"/sessions/{sid}/runs", params={"type": kind}))
            out[f"{kind}_runs"] = [(r.get("run_input"), r.get("content")) for r in runs
                                   if not r.get("parent_run_id")]
        detail = ok(await c.get("/sessions/w1", params={"type": "workflow"}))
        out["workflow_state"] = detail.get("session_state")
        return out

    result: dict[str, Any] = call(app, script)
    return result


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_team_and_workflow_through_agentos_as_over_sqlite(flavour: str, tmp_path: Path) -> None:
    reference = team_and_workflow(SqliteDb(db_file=str(tmp_path / "agno.db")) if flavour == "sync"
                                  else AsyncSqliteDb(db_file=str(tmp_path / "agno-async.db")))
    got = team_and_workflow(make_db(flavour, str(tmp_path / "log")))
    assert got == reference
    assert got["team"] == ["t1"] and got["workflow"] == ["w1"] and got["workflow_state"] == {"steps_done": 2}


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_concurrent_requests_on_the_async_db_lose_nothing(kind: str, tmp_path: Path,
                                                         request: pytest.FixtureRequest) -> None:
    """24 runs at once over 4 sessions and 3 users, memory writes beside them: every run is
    recorded once, in its own session, and every memory is there."""
    url = url_for(kind, tmp_path, request)
    app = make_app(AsyncEventLogDb(url))

    async def script(c: httpx.AsyncClient) -> None:
        async def one(i: int) -> None:
            ok(await c.post("/agents/assistant/runs", data={"message": f"turn {i}", "user_id": f"u{i % 3}",
                                                            "session_id": f"s{i % 4}-u{i % 3}", "stream": "false"}))

        async def remember(i: int) -> None:
            ok(await c.post("/memories", json={"memory": f"fact {i}", "user_id": f"u{i % 3}"}))

        await asyncio.gather(*(one(i) for i in range(24)), *(remember(i) for i in range(12)))

    call(app, script)
    fresh = EventLogDb(url)
    runs = {s.session_id: [r.input.input_content for r in s.runs or []] for s in fresh.get_sessions()}
    assert sum(len(v) for v in runs.values()) == 24
    for sid, inputs in runs.items():
        assert all(f"s{int(m.split()[1]) % 4}-u{int(m.split()[1]) % 3}" == sid for m in inputs), sid
    facts = [m.memory for m in fresh.get_user_memories() if m.memory.startswith("fact")]
    assert sorted(facts) == sorted(f"fact {i}" for i in range(12))
    assert fresh.store.verify().ok


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_agentos_over_a_view_of_the_past(flavour: str, tmp_path: Path) -> None:
    """`db.as_of(point)` served by AgentOS shows the sessions and learnings as they were; a
    write through it is refused and leaves the log as it was."""
    url = str(tmp_path / "log")
    db = make_db(flavour, url)

    async def first(c: httpx.AsyncClient) -> None:
        ok(await c.post("/agents/assistant/runs", data={"message": "early", "user_id": "u", "session_id": "old",
                                                        "stream": "false"}))
        ok(await c.post("/learnings", json={"learning_type": "user_profile", "user_id": "u",
                                            "content": {"v": 1}}), 201)

    call(make_app(db), first)
    point = EventLogDb(url).store.last_position()

    async def later(c: httpx.AsyncClient) -> None:
        ok(await c.post("/agents/assistant/runs", data={"message": "late", "user_id": "u", "session_id": "new",
                                                        "stream": "false"}))
        ok(await c.patch("/learnings/user_profile_u", json={"content": {"v": 2}}))

    call(make_app(make_db(flavour, url)), later)
    past = make_db(flavour, url).as_of(point)
    events_before = len(list(EventLogDb(url).store.read_all()))

    async def look(c: httpx.AsyncClient) -> tuple[list[str], Any]:
        sessions = ok(await c.get("/sessions", params={"type": "agent"}))
        learning = ok(await c.get("/learnings/user_profile_u"))
        return [s["session_id"] for s in sessions["data"]], learning["content"]

    app = make_app(past)
    assert call(app, look) == (["old"], {"v": 1})
    from eventlog import ReadOnlyStore

    with pytest.raises(ReadOnlyStore):  # uvicorn answers it with a 500; nothing is written
        call(app, lambda c: c.delete("/learnings/user_profile_u"))
    assert len(list(EventLogDb(url).store.read_all())) == events_before
