"""The web UI through its ASGI interface (httpx's ASGI transport, no server): every page on
memory, file and Redis stores, Redis with a file fallback and a Redis Cluster (16 partitions:
points are event ids there), paging, filters, the hash-chain badge on a tampered log, time
travel and diffs, forks (only when allowed, only from this UI's own form), live updates,
`as_of` views, escaping of stored markup, clear 400/404 pages for bad input, and mounting
under a prefix in FastAPI and in a real AgentOS app."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.agno.db import EventLogDb
from adapters.ui import EventLogUI, eventlog_ui, mount_ui
from eventlog import (
    Actor,
    EventStore,
    MessageAppended,
    RunRecorded,
    SessionStarted,
    UserMemoryAdded,
    new_event,
    open_store,
)
from eventlog.names import session_stream, user_stream
from tests.conftest import _make_store_factory
from tests.test_projections import seed

XSS = '<script>document.title="pwned"</script><img src=x onerror="document.body.dataset.pwned=1">'


def call(app: Any, method: str, path: str, *, root: str = "", **kwargs: Any) -> httpx.Response:
    """One request to an ASGI app, as a browser would send it."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, root_path=root)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def get(app: Any, path: str, **params: Any) -> httpx.Response:
    return call(app, "GET", path, params=params)


def texts(html: str, css_class: str) -> list[str]:
    """The text of every `<td class=...>` (tags stripped)."""
    return [re.sub(r"<[^>]+>", " ", m).strip() for m in re.findall(rf'<td class="{css_class}">(.*?)</td>', html)]


def error_of(response: httpx.Response) -> str:
    found = re.search(r'id="error">([^<]*)<', response.text)
    assert found, response.text[:500]
    return found.group(1)


@pytest.fixture(params=["memory", "file", "redis", "fallback", "cluster"])
def ui_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    yield _make_store_factory(request.param, request, tmp_path)()


def seeded(store: EventStore) -> tuple[EventLogDb, dict[str, Any]]:
    marks = seed(store)
    return EventLogDb(store=store, snapshots=False), marks


def test_every_page_on_each_store(ui_store: EventStore) -> None:
    db, marks = seeded(ui_store)
    app = eventlog_ui(db)

    page = get(app, "/")
    assert page.status_code == 200
    assert re.findall(r'data-session="([^"]+)"', page.text) == ["s2", "s1"] or set(
        re.findall(r'data-session="([^"]+)"', page.text)) == {"s1", "s2"}
    assert 'href="/memories?user=alice"' in page.text
    assert [m for m in re.findall(r'data-session="([^"]+)"', get(app, "/", user="bob").text)] == ["s2"]
    assert re.findall(r'data-session="([^"]+)"', get(app, "/", agent="planner").text) == ["s1"]
    assert re.findall(r'data-session="([^"]+)"', get(app, "/", q="s1").text) == ["s1"]  # an exact id
    assert re.findall(r'data-session="([^"]+)"', get(app, "/", q="firs").text) == ["s1"]  # part of a name

    timeline = get(app, "/session", id="s1")
    assert timeline.status_code == 200
    assert texts(timeline.text, "type") == ["session.started", "run.recorded", "session.state_changed",
                                            "run.recorded", "session.state_changed"]
    authors = texts(timeline.text, "author")
    assert "agent:planner" in authors[0] and "user:alice" in authors[0] and "run:r1" in authors[0]
    assert "agent:coder" in authors[3]
    assert 'id="chain">hash chain intact · 5 events' in timeline.text
    only_runs = get(app, "/session", id="s1", type="run.recorded")
    assert texts(only_runs.text, "type") == ["run.recorded", "run.recorded"]
    by_coder = get(app, "/session", id="s1", who="agent:coder")
    assert texts(by_coder.text, "type") == ["run.recorded", "session.state_changed"]

    first_run = marks["run1"][0]
    early = str(first_run.position) if ui_store.partitions == 1 else first_run.id
    state = get(app, "/state", session="s1", at=early)
    assert state.status_code == 200
    assert re.search(r'id="runs-at">(\d+)<', state.text).group(1) == "1"  # type: ignore[union-attr]
    assert "2 now" in state.text
    assert "plan it" in state.text and "code it" not in state.text
    assert "run.added" in state.text  # the change since the event before
    assert "likes tea" not in state.text  # the memory came later
    end = str(ui_store.last_position())
    now = get(app, "/state", session="s1", at=end)
    assert re.search(r'id="runs-at">(\d+)<', now.text).group(1) == "2"  # type: ignore[union-attr]
    assert "likes green tea" in now.text and "step3" in now.text  # the user's memory, the workflow

    changes = get(app, "/diff", session="s1", a=early, b=end)
    assert changes.status_code == 200
    for kind in ("run.added", "state.set", "memory.added", "workflow.step"):
        assert kind in changes.text

    agents = get(app, "/agents")
    assert "agent:planner" in agents.text and "workflow:deploy" in agents.text
    audit = get(app, "/audit", actor="agent:coder")
    assert texts(audit.text, "type") == ["memory.added", "run.recorded", "session.state_changed", "memory.updated",
                                         "memory.added"]
    memories = get(app, "/memories", user="alice")
    assert "likes green tea" in memories.text
    assert "likes tea → likes green tea" in memories.text  # the memory's history
    assert memories.text.count("<li>") == 2


def test_user_content_is_escaped_and_no_inline_script_may_run() -> None:
    store = open_store("memory://")
    a = Actor(agent_id=XSS, user_id=XSS, session_id="x", run_id="r1")
    store.append(session_stream("x"), [
        new_event(SessionStarted(session_id="x", user_id=XSS, agent_id=XSS, name=XSS), actor=a),
        new_event(RunRecorded(session_id="x", run_id="r1", run={"content": XSS, "input": {"input_content": XSS}}),
                  actor=a),
        new_event(MessageAppended(session_id="x", role="user", content=XSS), actor=a),
    ])
    store.append(user_stream(XSS), [new_event(UserMemoryAdded(memory_id="m", user_id=XSS, memory=XSS), actor=a)])
    app = eventlog_ui(EventLogDb(store=store, snapshots=False))
    for path, params in [("/", {}), ("/session", {"id": "x"}), ("/state", {"session": "x", "at": "3"}),
                         ("/memories", {"user": XSS}), ("/audit", {"actor": f"agent:{XSS}"}), ("/agents", {}),
                         ("/session", {"id": XSS}), ("/api/events", {"session": "x", "after": "0"})]:
        page = get(app, path, **params)
        assert "<script>document" not in page.text and "<img src=x" not in page.text, (path, page.text)
        assert page.status_code in (200, 404)
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert page.headers["x-content-type-options"] == "nosniff"
    assert "&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;" in get(app, "/session", id="x").text
    live = get(app, "/api/events", session="x", after="0").json()["html"]
    assert "&lt;script&gt;" in live and "<script" not in live and "<img" not in live


def test_bad_input_gets_a_clear_page_never_a_traceback() -> None:
    store = open_store("memory://")
    db, marks = seeded(store)
    app = eventlog_ui(db)
    cases = [
        ("/session", {"id": "nope"}, 404, "unknown session 'nope'"),
        ("/session", {}, 400, "missing id="),
        ("/session", {"id": "s1", "page": "0"}, 400, "bad page"),
        ("/session", {"id": "s1", "page": "x"}, 400, "bad page"),
        ("/session", {"id": "s1", "page": "9"}, 400, "past the last page"),
        ("/session", {"id": "an id with spaces"}, 404, "unknown session"),
        ("/session", {"id": "x" * 300}, 400, "stream name"),
        ("/state", {"session": "s1", "at": "2026-13-45"}, 400, "bad time"),
        ("/state", {"session": "s1", "at": "99999"}, 400, "past the end of the log"),
        ("/state", {"session": "s1", "at": "0:1,1:99"}, 400, "past the end of the log"),
        ("/state", {"session": "s1", "at": "<b>"}, 400, "bad point"),
        ("/state", {"session": "s1", "at": "01a24cca-6546-735e-8c23-3f3d07ea1ab4"}, 404, "no event"),
        ("/state", {"session": "s1", "at": marks["mem"][0].id}, 404, "no event"),  # not this session's
        ("/state", {"session": "s1"}, 400, "missing at="),
        ("/state", {"session": "nope", "at": "1"}, 404, "unknown session"),
        ("/diff", {"session": "s1", "a": "1", "b": "later"}, 400, "bad point"),
        ("/audit", {"actor": "planner"}, 400, "bad actor"),
        ("/audit", {"actor": "agent:nobody"}, 404, "no events by"),
        ("/nowhere", {}, 404, "no page"),
        ("/", {"page": "7"}, 400, "past the last page"),
    ]
    for path, params, status, message in cases:
        page = get(app, path, **params)
        assert page.status_code == status, (path, params, page.text[:300])
        assert message in error_of(page).replace("&#x27;", "'"), (path, params)
        assert "Traceback" not in page.text
    nobody = get(app, "/memories", user="nobody")
    assert nobody.status_code == 200 and "No memories." in nobody.text
    api = get(app, "/api/events", session="s1", after="x")
    assert api.status_code == 400 and "bad after" in api.json()["error"]
    assert get(app, "/api/events", session="nope", after="0").status_code == 404
    assert call(app, "POST", "/session", data={"id": "s1"}).status_code == 405
    assert call(app, "POST", "/fork", content=b"x" * 70_000).status_code == 413


def test_a_failing_store_is_a_500_page_without_details(monkeypatch: pytest.MonkeyPatch) -> None:
    db, _ = seeded(open_store("memory://"))
    app = eventlog_ui(db)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(db.store, "read", broken)
    page = get(app, "/session", id="s1")
    assert page.status_code == 500 and "secret detail" not in page.text and "Traceback" not in page.text


def test_fork_only_when_allowed_and_only_from_this_ui() -> None:
    store = open_store("memory://")
    db, marks = seeded(store)
    point = str(marks["run1"][0].position)
    read_only = eventlog_ui(db)
    assert "fork-button" not in get(read_only, "/state", session="s1", at=point).text
    refused = call(read_only, "POST", "/fork", data={"session": "s1", "at": point, "token": read_only.token})
    assert refused.status_code == 403 and "read-only" in error_of(refused)

    app = eventlog_ui(db, allow_fork=True)
    state = get(app, "/state", session="s1", at=point)
    token = re.search(r'name="token" value="([^"]+)"', state.text).group(1)  # type: ignore[union-attr]
    forged = call(app, "POST", "/fork", data={"session": "s1", "at": point, "token": "guess"})
    assert forged.status_code == 403
    assert store.streams("session/") == ["session/s1", "session/s2"]
    done = call(app, "POST", "/fork", data={"session": "s1", "at": point, "token": token})
    assert done.status_code == 303
    new_id = re.search(r'id="forked" href="[^"]*">([^<]+)<', done.text).group(1)  # type: ignore[union-attr]
    assert done.headers["location"] == f"/session?id={new_id}"
    copy = get(app, "/session", id=new_id)
    assert texts(copy.text, "type") == ["session.forked", "session.started", "run.recorded"]
    assert "forked from s1" in copy.text
    assert len(texts(get(app, "/session", id="s1").text, "type")) == 5  # the original is untouched
    assert new_id in get(app, "/").text  # the read models saw the fork
    view = eventlog_ui(db.as_of(point), allow_fork=True)
    assert call(view, "POST", "/fork", data={"session": "s1", "at": point, "token": view.token}).status_code == 403


def test_live_events_arrive_after_the_page_was_rendered(ui_store: EventStore) -> None:
    db, _ = seeded(ui_store)
    app = eventlog_ui(db)
    page = get(app, "/session", id="s1")
    last = re.search(r'data-last="(\d+)"', page.text).group(1)  # type: ignore[union-attr]
    assert get(app, "/api/events", session="s1", after=last).json() == {"last": 5, "count": 0, "html": ""}
    a = Actor(agent_id="reviewer", session_id="s1", run_id="r3")
    ui_store.append(session_stream("s1"), [new_event(RunRecorded(session_id="s1", run_id="r3", run={"content": "ok"}),
                                                     actor=a)])
    news = get(app, "/api/events", session="s1", after=last).json()
    assert news["last"] == 6 and news["count"] == 1
    assert "agent:reviewer" in news["html"] and "run r3" in news["html"]
    filtered = get(app, "/api/events", session="s1", after=last, who="agent:coder").json()
    assert filtered == {"last": 6, "count": 0, "html": ""}  # still moves the cursor on


def test_an_as_of_view_shows_the_past_and_never_moves(ui_store: EventStore) -> None:
    db, marks = seeded(ui_store)
    point = marks["run2"][-1]
    cut = str(point.position) if ui_store.partitions == 1 else point.id
    app = eventlog_ui(db.as_of(cut))
    sessions = get(app, "/")
    assert re.findall(r'data-session="([^"]+)"', sessions.text) == ["s1"]  # s2 started later
    assert "as of" in sessions.text
    timeline = get(app, "/session", id="s1")
    assert len(texts(timeline.text, "type")) == 5 and "data-live" not in timeline.text
    assert get(app, "/session", id="s2").status_code == 404
    assert "likes green tea" not in get(app, "/memories", user="alice").text  # updated after the point
    ui_store.append(session_stream("s1"), [new_event(RunRecorded(session_id="s1", run_id="r9", run={}))])
    assert get(app, "/api/events", session="s1", after="5").json()["count"] == 0
    assert len(texts(get(app, "/session", id="s1").text, "type")) == 5
    if ui_store.partitions == 1:
        assert get(app, "/state", session="s1", at=str(int(cut) + 100)).status_code == 400


def test_paging_a_long_session_and_many_sessions() -> None:
    store = open_store("memory://")
    a = Actor(agent_id="planner", user_id="u", session_id="long")
    store.append(session_stream("long"), [new_event(SessionStarted(session_id="long", user_id="u"), actor=a)])
    store.append(session_stream("long"), [new_event(RunRecorded(session_id="long", run_id=f"r{i}",
                                                                run={"content": f"turn {i}"}), actor=a)
                                          for i in range(1000)])
    for i in range(120):
        store.append(session_stream(f"s{i:03d}"), [new_event(SessionStarted(session_id=f"s{i:03d}", user_id="u",
                                                                             created_at=1_000 + i))])
    app = eventlog_ui(EventLogDb(store=store, snapshots=False))
    last = get(app, "/session", id="long")
    rows = texts(last.text, "type")
    assert len(rows) == 1 and "page 6 of 6 · 1,001 events" in last.text  # the newest page, live
    assert "turn 999" in last.text and "data-live" in last.text
    first = get(app, "/session", id="long", page="1")
    assert len(texts(first.text, "type")) == 200 and "out: turn 0</td>" in first.text
    assert "data-live" not in first.text
    state = get(app, "/state", session="long", at="1001")
    assert re.search(r'id="runs-at">(\d+)<', state.text).group(1) == "1000"  # type: ignore[union-attr]
    assert state.text.count('<tr class="run">') == 100 and "page 10 of 10 · 1,000 runs" in state.text
    assert "turn 999" in state.text and "turn 899" not in state.text
    early_runs = get(app, "/state", session="long", at="1001", runs="1")
    assert "turn 0<" in early_runs.text and "turn 100<" not in early_runs.text
    assert get(app, "/state", session="long", at="1001", runs="11").status_code == 400
    assert 'rel="next"' in first.text and 'rel="prev"' not in first.text
    page1 = get(app, "/")
    ids = re.findall(r'data-session="([^"]+)"', page1.text)
    assert len(ids) == 50 and "page 1 of 3 · 121 sessions" in page1.text
    page3 = get(app, "/", page="3")
    assert len(re.findall(r'data-session="([^"]+)"', page3.text)) == 21
    everything = ids + re.findall(r'data-session="([^"]+)"', get(app, "/", page="2").text) + \
        re.findall(r'data-session="([^"]+)"', page3.text)
    assert len(set(everything)) == 121


def test_the_chain_badge_names_the_first_bad_event(tmp_path: Path) -> None:
    url = str(tmp_path / "log")
    store = open_store(url)
    seed(store)
    store.close()
    segment = next((tmp_path / "log").glob("*.jsonl"))
    data = segment.read_bytes()
    assert data.count(b'"code it"') == 1
    segment.write_bytes(data.replace(b'"code it"', b'"c0de it"'))
    store = open_store(url)
    try:
        page = get(eventlog_ui(EventLogDb(store=store, snapshots=False)), "/session", id="s1")
        assert page.status_code == 200
        badge = re.search(r'id="chain">([^<]+)<', page.text).group(1)  # type: ignore[union-attr]
        assert "broken at version 4: edited" in badge
        assert "hash chain intact" in get(eventlog_ui(EventLogDb(store=store, snapshots=False)), "/session",
                                          id="s2").text
    finally:
        store.close()


def test_mounted_under_a_prefix_in_fastapi_and_agentos() -> None:
    fastapi = pytest.importorskip("fastapi")
    from agno.agent import Agent
    from agno.os import AgentOS

    from adapters.agno.model import OfflineModel

    store = open_store("memory://")
    db, _ = seeded(store)
    plain = fastapi.FastAPI()
    plain.mount("/eventlog", eventlog_ui(db))
    assert call(plain, "GET", "/eventlog/").status_code == 200
    agent = Agent(name="helper", id="helper", model=OfflineModel(), db=db)
    app = AgentOS(agents=[agent]).get_app()
    mount_ui(app, "/eventlog", db)
    # AgentOS strips trailing slashes, so its way in is /eventlog (redirected to the sessions page)
    entry = call(app, "GET", "/eventlog/", follow_redirects=True)
    assert entry.status_code == 200 and entry.url.path == "/eventlog/sessions"
    for host in (plain, app):
        page = call(host, "GET", "/eventlog/sessions")
        assert page.status_code == 200
        assert 'href="/eventlog/session?id=s1"' in page.text
        assert 'src="/eventlog/static/app.js"' in page.text and 'action="/eventlog/sessions"' in page.text
        timeline = call(host, "GET", "/eventlog/session", params={"id": "s1"})
        assert timeline.status_code == 200 and 'data-live="/eventlog/api/events?session=s1"' in timeline.text
        assert call(host, "GET", "/eventlog/static/app.css").headers["content-type"].startswith("text/css")
        assert call(host, "GET", "/eventlog/session", params={"id": "nope"}).status_code == 404
    assert call(app, "GET", "/health").status_code == 200  # AgentOS's own routes still answer
    assert call(app, "GET", "/agents").status_code == 200


def test_eventlog_ui_accepts_a_db_a_store_or_a_url(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "log"))
    seed(store)
    for app in (eventlog_ui(store), eventlog_ui(str(tmp_path / "log"))):
        assert isinstance(app, EventLogUI)
        assert "s1" in get(app, "/").text
    store.close()
