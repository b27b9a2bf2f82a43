"""The UI in a real browser: headless Chromium loads the pages of a log made by `eventlog demo`
(served by `adapters.ui.server`, as `eventlog ui` serves it) and the test reads the DOM after
the page's JavaScript ran (`--dump-dom` once a virtual-time budget has let the live poll fire):
the session is listed, the timeline shows the demo's events with their agents and an event
appended after the page loaded, the state at an early point has fewer runs than now, and a
`<script>`/`onerror` payload an agent stored is shown as text and never runs.

Each page's screenshot is kept in tests/artifacts/ui/ (ignored by git). Chromium is the Debian
package `chromium` (`.ci/run` installs it): without it these tests skip, except under CI=true,
where they fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from adapters.agno.db import EventLogDb
from adapters.ui.app import EventLogUI
from adapters.ui.server import Server
from eventlog import Actor, EventStore, MessageAppended, new_event, open_store
from eventlog.names import session_stream
from tests.conftest import IN_CI
from tests.test_cli import as_json, eventlog

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "ui"
XSS = '<script>document.title="pwned"</script><img src=x onerror="document.body.dataset.pwned=1">'
LIVE = "LIVE-MARKER arrived after the page loaded"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if IN_CI:
            pytest.fail("chromium not found, and CI=true: the browser tests must run in CI (apt-get install chromium)")
        pytest.skip("chromium not installed; browser tests skipped (apt-get install chromium)")
    return found


def browse(chromium: str, url: str, shot: str, *, budget_ms: int = 1500, size: str = "1400,1000") -> str:
    """The DOM after the page's scripts ran for `budget_ms` of virtual time; a screenshot too."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
             f"--virtual-time-budget={budget_ms}", f"--screenshot={ARTIFACTS / shot}", "--dump-dom", url],
            capture_output=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert (ARTIFACTS / shot).stat().st_size > 10_000  # a picture of a page, not of nothing
    return done.stdout.decode()


class AppendOnFirstPoll:
    """Wraps the UI: the first live poll of a timeline finds one event that was appended after
    the page was rendered (what another process writing the log looks like to the browser)."""

    def __init__(self, app: EventLogUI, store: EventStore, session_id: str) -> None:
        self.app, self.store, self.session_id = app, store, session_id
        self.polls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("path") == "/api/events":
            self.polls += 1
            if self.polls == 1:
                actor = Actor(agent_id="reviewer", user_id="demo-user", session_id=self.session_id)
                self.store.append(session_stream(self.session_id), [new_event(MessageAppended(
                    session_id=self.session_id, role="assistant", content=f"{LIVE} {XSS}", name="reviewer"),
                    actor=actor)])
        await self.app(scope, receive, send)


@dataclass
class Served:
    url: str
    session_id: str
    app: AppendOnFirstPoll


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    log_dir = tmp_path_factory.mktemp("demo") / "log"
    demo = as_json(eventlog("--url", str(log_dir), "--json", "demo", env={"MEMORY_DIR": str(log_dir)}))
    session_id = demo["session_id"]
    store = open_store(str(log_dir))
    # A user whose message carries markup: the team stores it (and echoes it) as any input.
    from adapters.agno.factory import AgentFactory
    from adapters.memory_manager import MemoryManager

    memory = MemoryManager(store, user_id="demo-user")
    agent = AgentFactory(memory, user_id="demo-user", session_id=session_id).create_agent(name="coder")
    agent.run(f"please render {XSS}", session_id=session_id, user_id="demo-user")
    db = EventLogDb(store=store, snapshots=False)
    app = AppendOnFirstPoll(EventLogUI(db, poll_seconds=0.25), store, session_id)
    server = Server(app, "127.0.0.1", 0).start()
    yield Served(server.url.rstrip("/"), session_id, app)
    server.stop()
    store.close()


def rows(dom: str) -> list[dict[str, str]]:
    """The timeline's rows as a person reads them: type, author chips, what, state link."""
    found = []
    for row in re.findall(r'<tr class="event"(.*?)</tr>', dom, flags=re.S):
        cells = {name: re.sub(r"<[^>]+>", " ", text) for name, text in
                 re.findall(r'<td class="(type|author|what)">(.*?)</td>', row, flags=re.S)}
        link = re.search(r'<a class="at" href="([^"]+)"', row)
        found.append({**cells, "href": link.group(1).replace("&amp;", "&") if link else ""})
    return found


class Elements(HTMLParser):
    """Every element of a serialized DOM with its attributes, and the page's title."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.title = ""
        self._in_title = False
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False


def assert_inert(dom: str, *, whole_payload: bool = True) -> None:
    """The stored payload is text on the page: no element was made from it, nothing ran."""
    page = Elements(dom)
    assert not [tag for tag, _ in page.elements if tag == "img"]
    assert not [tag for tag, attrs in page.elements if any(name.startswith("on") for name in attrs)]
    assert [attrs.get("src") for tag, attrs in page.elements if tag == "script"] == ["/static/app.js"]
    body = next(attrs for tag, attrs in page.elements if tag == "body")
    assert "data-pwned" not in body
    assert "pwned" not in page.title and page.title.endswith("eventlog")
    assert "&lt;script&gt;document.title" in dom  # the payload is there, as text
    if whole_payload:
        assert 'onerror="document.body.dataset.pwned=1"' in dom


def test_the_sessions_page_lists_the_demo_session(chromium: str, served: Served) -> None:
    dom = browse(chromium, f"{served.url}/sessions", "sessions.png", size="1400,600")
    assert f'data-session="{served.session_id}"' in dom
    assert "demo-user" in dom and "team:dev-team" in dom


def test_the_timeline_shows_the_demo_events_with_their_agents_and_live_ones(chromium: str, served: Served) -> None:
    dom = browse(chromium, f"{served.url}/session?id={served.session_id}", "timeline.png", budget_ms=3000,
                 size="1400,1400")
    shown = rows(dom)
    types = [r["type"].strip() for r in shown]
    assert types[0] == "session.started" and types.count("run.recorded") >= 13
    authors = " ".join(r["author"] for r in shown)
    for who in ("agent:planner", "agent:coder", "agent:reviewer", "team:dev-team", "user:demo-user"):
        assert who in authors
    assert 'id="chain">hash chain intact' in dom
    assert served.app.polls >= 1
    live = [r for r in shown if LIVE in r["what"]]  # added by the page's script, after it loaded
    assert len(live) == 1 and "agent:reviewer" in live[0]["author"]
    assert re.search(r'id="stream-count">(\d+)<', dom).group(1) == str(len(shown))  # type: ignore[union-attr]
    assert_inert(dom)
    assert "&lt;script&gt;document.title" in dom  # the payload, as text, in the coder's run and the live row


def test_the_state_at_an_earlier_point_has_fewer_runs_than_now(chromium: str, served: Served) -> None:
    timeline = rows(browse(chromium, f"{served.url}/session?id={served.session_id}", "timeline-again.png"))
    first_run = next(r for r in timeline if r["type"].strip() == "run.recorded")
    early = browse(chromium, f"{served.url}{first_run['href']}", "state-early.png", size="1400,1200")
    now = browse(chromium, f"{served.url}{timeline[-1]['href']}", "state-now.png", size="1400,1600")
    early_runs = int(re.search(r'id="runs-at">(\d+)<', early).group(1))  # type: ignore[union-attr]
    now_runs = int(re.search(r'id="runs-at">(\d+)<', now).group(1))  # type: ignore[union-attr]
    assert early_runs == 1 and now_runs >= 14 and early_runs < now_runs
    assert "release" in now and "release" not in early  # the workflow's steps came later
    assert_inert(now)


def test_memories_and_audit_pages_render_in_the_browser(chromium: str, served: Served) -> None:
    memories = browse(chromium, f"{served.url}/memories?user=demo-user", "memories.png", size="1400,700")
    assert "I prefer Python" in memories and "memory.added" in memories
    agents = browse(chromium, f"{served.url}/agents", "agents.png", size="1400,600")
    assert "agent:planner" in agents
    audit = browse(chromium, f"{served.url}/audit?actor=agent:coder", "audit.png", size="1400,1000")
    assert "run.recorded" in audit and "workflow.step_completed" in audit
    assert_inert(audit, whole_payload=False)  # summaries are cut short
    missing = browse(chromium, f"{served.url}/session?id=no-such-session", "not-found.png", size="1000,400")
    assert "unknown session" in missing and "404" in missing
