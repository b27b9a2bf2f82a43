"""The web UI's pages on a long session and many sessions (file store): time to render each.

A session of 1,000 Agno-sized runs (100 with --quick) among 50,000 sessions (1,000): the
timeline's newest and first pages, a filtered timeline, the state at the middle point, and the
sessions list. Each page is rendered by the app's own handler (no HTTP), best of 5. The raw
limit is reading the session's stream (`store.read`), which every timeline and state page
needs at least once; the target is under a second per page on this machine.
"""

from __future__ import annotations

from benchmarks._common import Result, Settings, fmt_ms, tempdir, timed
from eventlog import Actor, RunRecorded, SessionStarted, new_event, open_store
from eventlog.names import session_stream

RUN = {"content": "x" * 1500, "status": "COMPLETED", "input": {"input_content": "hello " * 50},
       "messages": [{"role": "user", "content": "hello " * 50}, {"role": "assistant", "content": "y" * 1500}]}


def run(settings: Settings) -> Result:
    from adapters.agno.db import EventLogDb
    from adapters.ui.app import EventLogUI, Request

    runs = 100 if settings.quick else 1000
    sessions = 1000 if settings.quick else 50_000
    result = Result("ui_pages", f"UI pages: a session of {runs:,} runs among {sessions:,} sessions (file store)",
                    ["page", "render (best of 5)", "raw: read the stream", "render / raw", "target"])
    with tempdir() as d:
        store = open_store(str(d / "log"))
        actor = Actor(agent_id="planner", user_id="u", session_id="long")
        stream = session_stream("long")
        store.append(stream, [new_event(SessionStarted(session_id="long", user_id="u"), actor=actor)])
        for start in range(0, runs, 100):
            store.append(stream, [new_event(RunRecorded(session_id="long", run_id=f"r{i}", run=RUN), actor=actor)
                                  for i in range(start, min(runs, start + 100))])
        for i in range(sessions - 1):
            store.append(session_stream(f"s{i}"), [new_event(SessionStarted(session_id=f"s{i}", user_id=f"u{i % 100}",
                                                                            created_at=i))])
        app = EventLogUI(EventLogDb(store=store, snapshots=False))
        raw = min(timed(lambda: list(store.read(stream))) for _ in range(5))
        middle = str(store.head(stream).version // 2 + 1)
        pages = [
            ("timeline, newest page", "/session", {"id": ["long"]}),
            ("timeline, first page", "/session", {"id": ["long"], "page": ["1"]}),
            ("timeline, one author", "/session", {"id": ["long"], "who": ["agent:planner"]}),
            ("state at the middle", "/state", {"session": ["long"], "at": [middle]}),
            ("sessions, page 1", "/", {}),
        ]
        for label, path, query in pages:
            request = Request(method="GET", path=path, root="", query=query)
            status = app.handle(request).status
            if status != 200:
                raise RuntimeError(f"{label}: HTTP {status}")
            best = min(timed(lambda r=request: app.handle(r)) for _ in range(5))  # type: ignore[misc]
            result.rows.append([label, fmt_ms(best), fmt_ms(raw), f"{best / raw:.1f}x" if raw else "-", "< 1 s"])
        store.close()
    result.notes.append("The sessions list reads no log: its time is one page of EventLogDb.get_sessions out of "
                        f"{sessions:,} sessions (its ratio to the stream read is only for scale).")
    return result
