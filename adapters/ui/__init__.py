"""The time-travel web UI: sessions, a session's timeline with its hash-chain badge, the state
at any point and diffs between points, forks, audit per agent and a user's memories.

`eventlog_ui(db)` is an ASGI app (mount it in AgentOS: `app.mount("/eventlog", eventlog_ui(db))`,
or `mount_ui(app, "/eventlog", db)`, which also answers `/eventlog` itself); `eventlog ui`
serves it on loopback. Modules: `app` (routes), `pages` (HTML, escaped), `queries` (what each
page reads), `points` (state at a point, diffs, forks), `assets` (script and styles),
`server` (a small HTTP server).
"""

from adapters.ui.app import EventLogUI, eventlog_ui, mount_ui

__all__ = ["EventLogUI", "eventlog_ui", "mount_ui"]
