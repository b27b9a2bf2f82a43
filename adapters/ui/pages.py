"""The UI's HTML: one function per page, every stored value escaped on the way out.

Pages are plain server-rendered HTML with one small script (live updates) and one style
sheet, both served as files so the Content-Security-Policy can forbid inline scripts: what an
agent or a user stored (a message holding `<script>`) is text here, never markup, and even a
slip in escaping would not run. Links carry ids in query strings (never in path segments), so
any session id survives a mount prefix and any server's path decoding.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from adapters.ui import queries as q
from adapters.ui.points import PointState
from eventlog import Event, RunRecorded
from projections.timetravel import Change

TEXT_CUT = 160


def e(value: Any) -> str:
    """Text made safe for HTML content and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def short(value: Any, cut: int = TEXT_CUT) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= cut else text[: cut - 1] + "…"


def pretty(value: Any) -> str:
    """A JSON value, indented, escaped, in a <pre>."""
    return f"<pre>{e(json.dumps(value, indent=2, default=str, ensure_ascii=False, sort_keys=True))}</pre>"


@dataclass(frozen=True)
class Links:
    """URLs of the pages, under the prefix the app is mounted at."""

    root: str = ""

    def to(self, path: str, **query: Any) -> str:
        params = {k: v for k, v in query.items() if v not in (None, "")}
        return f"{self.root}{path}" + (f"?{urlencode(params, doseq=True)}" if params else "")

    def session(self, session_id: str, **query: Any) -> str:
        return self.to("/session", id=session_id, **query)

    def state(self, session_id: str, point: str) -> str:
        return self.to("/state", session=session_id, at=point)

    def actor(self, key: str, **query: Any) -> str:
        return self.to("/audit", actor=key, **query)

    def memories(self, user_id: str) -> str:
        return self.to("/memories", user=user_id)


@dataclass(frozen=True)
class Context:
    """What every page's frame shows: where it is mounted, the store, the view, the mode."""

    links: Links
    store_url: str
    view: str | None  # the as_of point, for a view
    allow_fork: bool
    token: str  # the fork form's anti-forgery token
    poll_ms: int


def frame(ctx: Context, title: str, body: str) -> str:
    link = ctx.links
    mode = "forks allowed" if ctx.allow_fork and ctx.view is None else "read-only"
    view = f'<span class="badge view">as of {e(ctx.view)}</span>' if ctx.view is not None else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · eventlog</title><link rel="stylesheet" href="{e(link.to('/static/app.css'))}"></head>
<body><header><a class="brand" href="{e(link.to('/sessions'))}">eventlog</a>
<nav><a href="{e(link.to('/sessions'))}">sessions</a> <a href="{e(link.to('/agents'))}">agents</a></nav>
<span class="store">{e(ctx.store_url)}</span> {view} <span class="badge mode">{e(mode)}</span></header>
<main>{body}</main>
<script src="{e(link.to('/static/app.js'))}"></script></body></html>
"""


def error_page(ctx: Context, status: int, message: str) -> str:
    title = {400: "Bad request", 403: "Not allowed", 404: "Not found", 503: "Store unavailable"}.get(status, "Error")
    body = (f'<h1>{status} · {e(title)}</h1><p class="error" id="error">{e(message)}</p>'
            f'<p><a href="{e(ctx.links.to("/sessions"))}">back to the sessions</a></p>')
    return frame(ctx, title, body)


def pager(page: int, pages: int, make: Any, total: int | None = None, unit: str = "") -> str:
    """`« prev · page x of y · next »`; `make(n)` is the URL of page n."""
    parts = []
    if page > 1:
        parts.append(f'<a rel="prev" href="{e(make(1))}">first</a> <a rel="prev" href="{e(make(page - 1))}">« prev</a>')
    parts.append(f'<span class="page">page {page} of {pages}' + (f" · {total:,} {e(unit)}" if total is not None else "")
                 + "</span>")
    if page < pages:
        parts.append(f'<a rel="next" href="{e(make(page + 1))}">next »</a> <a href="{e(make(pages))}">last</a>')
    return f'<div class="pager">{" ".join(parts)}</div>'


def _owner_links(ctx: Context, row: Mapping[str, Any]) -> str:
    out = []
    for kind in ("agent", "team", "workflow"):
        ident = row.get(f"{kind}_id")
        if ident:
            out.append(f'<a class="who {kind}" href="{e(ctx.links.actor(f"{kind}:{ident}"))}">{e(kind)}:{e(ident)}</a>')
    return " ".join(out)


# --- sessions -----------------------------------------------------------------------------------


def sessions_page(ctx: Context, found: q.SessionsPage, *, user: str, agent: str, query: str) -> str:
    link = ctx.links
    form = f"""<form class="search" method="get" action="{e(link.to('/sessions'))}">
<label>user <input name="user" value="{e(user)}" placeholder="user id"></label>
<label>agent <input name="agent" value="{e(agent)}" placeholder="agent, team or workflow id"></label>
<label>session <input name="q" value="{e(query)}" placeholder="session id or name"></label>
<button type="submit">search</button></form>"""
    rows = []
    for row in found.rows:
        sid = str(row.get("session_id"))
        user_id = row.get("user_id")
        user_cell = f'<a href="{e(link.memories(user_id))}">{e(user_id)}</a>' if user_id else ""
        rows.append(
            f'<tr class="session" data-session="{e(sid)}"><td><a href="{e(link.session(sid))}">{e(sid)}</a></td>'
            f"<td>{e(q.session_name(row) or '')}</td><td>{e(row.get('session_type'))}</td><td>{user_cell}</td>"
            f"<td>{_owner_links(ctx, row)}</td><td>{e(q.utc(row.get('created_at')))}</td>"
            f"<td>{e(q.utc(row.get('updated_at')))}</td></tr>")
    table = ('<table id="sessions"><thead><tr><th>session</th><th>name</th><th>type</th><th>user</th>'
             "<th>owner</th><th>created (UTC)</th><th>updated (UTC)</th></tr></thead><tbody>"
             + "".join(rows) + "</tbody></table>") if rows else '<p class="empty">No sessions match.</p>'
    more = pager(found.page, found.pages, lambda n: link.to("/sessions", user=user, agent=agent, q=query, page=n),
                 found.total, "sessions")
    return frame(ctx, "Sessions", f"<h1>Sessions</h1>{form}{more}{table}{more}")


# --- timeline -----------------------------------------------------------------------------------


def summary(event: Event) -> str:
    """One line saying what an event did (plain text; escaped by the caller)."""
    p: Any = event.payload
    kind = event.type
    if isinstance(p, RunRecorded):
        run = p.run
        said = run_input(run)
        out = run.get("content")
        text = f"run {p.run_id[:8]} [{run.get('status') or '?'}]"
        if said:
            text += f" in: {short(said, 60)}"
        if out is not None:
            text += f" → out: {short(out, 80)}"
        return text
    if kind == "message.appended":
        return f"{p.role}: {short(p.content)}"
    if kind == "session.state_changed":
        parts = [f"{k} = {short(v, 40)}" for k, v in p.set.items()] + [f"-{k}" for k in p.removed]
        return "state: " + short(", ".join(parts) or "saved, no keys")
    if kind == "session.renamed":
        return f"renamed to {short(p.name)}"
    if kind == "session.forked":
        return f"forked from {p.origin_session_id} at version {p.origin_version}"
    if kind == "session.started":
        return f"{p.session_type} session started" + (f" ({short(p.name, 60)})" if p.name else "")
    if kind in ("memory.added", "memory.updated"):
        return f"memory {p.memory_id[:8]}: {short(p.memory)}"
    if kind == "workflow.step_completed":
        return f"{p.workflow} step {p.step}" + (f" ({p.name})" if p.name else "") + (
            f" of {p.total}" if p.total else "")
    if kind == "session.summary_changed":
        return f"summary: {short(p.summary)}"
    if kind == "session.fields_changed":
        return "fields: " + short(", ".join(sorted(p.fields)))
    if kind == "unknown.kept":
        return f"(a newer writer's {p.kind}: kept as stored)"
    return ""


def run_input(run: Mapping[str, Any]) -> Any:
    """What the user said in a run: Agno keeps it in `input` (text, or the messages a member
    of a team was handed: then the newest user message not replayed from history)."""
    value = run.get("input")
    if isinstance(value, dict):
        value = value.get("input_content") or value.get("content") or value
    if value is None:
        value = run.get("messages")
    if isinstance(value, list):
        said = [m for m in value if isinstance(m, dict) and m.get("role") == "user"]
        fresh = [m for m in said if not m.get("from_history")]
        return (fresh or said)[-1].get("content") if said else None
    return value


def author_chips(ctx: Context, event: Event) -> str:
    chips = []
    for kind, ident in q.author(event).items():
        label = f"{kind}:{ident if kind != 'run' else ident[:8]}"
        if kind == "run":
            chips.append(f'<span class="who run" title="{e(ident)}">{e(label)}</span>')
        else:
            chips.append(f'<a class="who {kind}" href="{e(ctx.links.actor(f"{kind}:{ident}"))}">{e(label)}</a>')
    return " ".join(chips)


def event_rows(ctx: Context, session_id: str, events: Iterable[Event], points: Mapping[str, str], *,
               pick: bool = True) -> str:
    """The timeline's rows (also what a live update appends)."""
    out = []
    for event in events:
        point = points.get(event.id, event.id)
        radios = (f'<td class="pick"><input type="radio" name="a" value="{e(point)}" title="diff from here"></td>'
                  f'<td class="pick"><input type="radio" name="b" value="{e(point)}" title="diff to here"></td>'
                  ) if pick else ""
        out.append(
            f'<tr class="event" data-type="{e(event.type)}" data-version="{event.version}">{radios}'
            f"<td>{event.version}</td><td>{e(point if point.isdigit() else event.position)}</td>"
            f'<td class="time">{e(event.at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3])}</td>'
            f'<td class="type">{e(event.type)}</td><td class="author">{author_chips(ctx, event)}</td>'
            f'<td class="what">{e(summary(event))}</td>'
            f'<td><a class="at" href="{e(ctx.links.state(session_id, point))}">state after</a></td></tr>')
    return "".join(out)


def chain_badge(chain: q.ChainStatus) -> str:
    if chain.ok:
        return f'<span class="badge ok" id="chain">hash chain intact · {chain.events} events</span>'
    bad = chain.first_bad
    where = f"version {bad.version}: {bad.kind} ({bad.detail})" if bad is not None else "broken"
    return f'<span class="badge bad" id="chain">hash chain broken at {e(where)}</span>'


def _select(name: str, options: Sequence[str], chosen: str | None, empty: str) -> str:
    opts = [f'<option value="">{e(empty)}</option>']
    for option in options:
        sel = " selected" if option == chosen else ""
        opts.append(f'<option value="{e(option)}"{sel}>{e(option)}</option>')
    return f'<select name="{e(name)}">{"".join(opts)}</select>'


def session_header(ctx: Context, session_id: str, row: Mapping[str, Any] | None) -> str:
    link = ctx.links
    bits = [f"<h1>Session <code>{e(session_id)}</code></h1>"]
    if row:
        name = q.session_name(dict(row))
        user = row.get("user_id")
        facts = []
        if name:
            facts.append(f"name <b>{e(name)}</b>")
        if user:
            facts.append(f'user <a href="{e(link.memories(user))}">{e(user)}</a>')
        owners = _owner_links(ctx, row)
        if owners:
            facts.append(owners)
        facts.append(f"{e(row.get('session_type'))} session")
        bits.append(f'<p class="facts">{" · ".join(facts)}</p>')
    return "".join(bits)


def timeline_page(ctx: Context, t: q.Timeline, *, type_filter: str, who: str) -> str:
    link = ctx.links
    sid = t.session_id
    filters = f"""<form class="filters" method="get" action="{e(link.to('/session'))}">
<input type="hidden" name="id" value="{e(sid)}">
<label>type {_select("type", t.types, type_filter, "all types")}</label>
<label>author {_select("who", t.authors, who, "everyone")}</label>
<button type="submit">filter</button></form>"""
    live = ctx.view is None and t.page == t.pages
    live_url = link.to("/api/events", session=sid, type=type_filter, who=who)
    live_attrs = (f' data-live="{e(live_url)}" data-last="{t.last_version}" data-poll="{ctx.poll_ms}"'
                  if live else "")
    status = '<span id="live-status" class="live">live</span>' if live else ""
    more = pager(t.page, t.pages, lambda n: link.session(sid, type=type_filter, who=who, page=n), t.total, "events")
    rows = event_rows(ctx, sid, t.events, t.points)
    table = f"""<form class="diff" method="get" action="{e(link.to('/diff'))}">
<input type="hidden" name="session" value="{e(sid)}">
<table id="timeline"><thead><tr><th title="diff from">A</th><th title="diff to">B</th><th>version</th>
<th>position</th><th>time (UTC)</th><th>type</th><th>author</th><th>what</th><th></th></tr></thead>
<tbody id="events"{live_attrs}>{rows}</tbody></table>
<button type="submit" id="diff-button">diff A → B</button></form>"""
    last_point = link.state(sid, t.points[t.events[-1].id]) if t.events else ""
    now = f'<a href="{e(last_point)}">state now</a>' if last_point and t.page == t.pages else ""
    body = (f"{session_header(ctx, sid, t.row)}<p>{chain_badge(t.chain)} "
            f'<span id="count">{t.total}</span> of <span id="stream-count">{t.stream_events}</span> events '
            f"{status} {now}</p>"
            f"{filters}{more}{table}{more}")
    return frame(ctx, f"Session {sid}", body)


# --- state at a point, diff, fork -------------------------------------------------------------


def changes_table(changes: Sequence[Change], session_id: str, *, table_id: str = "changes") -> str:
    """The changes between two points; keys lose the session's own id (`<session>:<run>`)."""
    if not changes:
        return '<p class="empty">Nothing changed.</p>'
    mine = f"{session_id}:"
    rows = "".join(f'<tr><td class="kind">{e(c.kind)}</td><td>{e(c.key.removeprefix(mine))}</td>'
                   f"<td>{e(short(c.before))}</td><td>{e(short(c.after))}</td></tr>" for c in changes)
    return (f'<table id="{e(table_id)}"><thead><tr><th>change</th><th>what</th><th>before</th><th>after</th></tr>'
            f"</thead><tbody>{rows}</tbody></table>")


RUNS_PER_PAGE = 100


def state_page(ctx: Context, s: PointState, runs_page: int | None = None) -> str:
    """The state just after a point; a long conversation shows 100 runs a page (the newest
    page unless `runs_page`)."""
    link = ctx.links
    sid = s.session_id
    models = s.models
    row = models.sessions.sessions.get(sid)
    conv = models.conversation.sessions.get(sid)
    runs = conv.runs if conv is not None else []
    ev = s.event
    where = (f"just after version {ev.version} ({e(ev.type)} by {e(q.writer(ev) or 'nobody')}, "
             f"{e(ev.at.strftime('%Y-%m-%d %H:%M:%S'))} UTC)") if ev is not None else "before its first event"
    nav = [f'<a href="{e(link.session(sid))}">timeline</a>']
    if s.previous:
        nav.append(f'<a rel="prev" href="{e(link.state(sid, s.previous))}">« previous event</a>')
    if s.next:
        nav.append(f'<a rel="next" href="{e(link.state(sid, s.next))}">next event »</a>')
    parts = [f"<h1>Session <code>{e(sid)}</code> at {e(s.point)}</h1>",
             f'<p class="facts">{where} · <span id="runs-at">{len(runs)}</span> runs here, '
             f'{s.runs_now} now · {" · ".join(nav)}</p>']
    if ctx.allow_fork and ctx.view is None and ev is not None:
        parts.append(f"""<form class="fork" method="post" action="{e(link.to('/fork'))}">
<input type="hidden" name="session" value="{e(sid)}"><input type="hidden" name="at" value="{e(s.point)}">
<input type="hidden" name="token" value="{e(ctx.token)}">
<button type="submit" id="fork-button">fork a new session from here</button></form>""")
    parts.append(f'<h2>Changes since the event before</h2>{changes_table(s.changes, sid)}')
    pages = q.pages_of(len(runs), RUNS_PER_PAGE)
    if runs_page is not None and runs_page > pages:
        raise q.BadRequest(f"runs page {runs_page} is past the last one ({pages})")
    shown = pages if runs_page is None else runs_page
    first = (shown - 1) * RUNS_PER_PAGE
    run_rows = []
    for i, entry in enumerate(runs[first: first + RUNS_PER_PAGE], start=first + 1):
        run = entry.run
        who = entry.agent_id or entry.team_id or entry.workflow_id or ""
        run_rows.append(f'<tr class="run"><td>{i}</td><td title="{e(entry.run_id)}">{e(entry.run_id[:8])}</td>'
                        f"<td>{e(who)}</td><td>{e(run.get('status'))}</td><td>{e(short(run_input(run), 200))}</td>"
                        f"<td>{e(short(run.get('content'), 300))}</td></tr>")
    more = pager(shown, pages, lambda n: link.to("/state", session=sid, at=s.point, runs=n), len(runs), "runs") \
        if pages > 1 else ""
    parts.append("<h2>Conversation</h2>" + more + (
        '<table id="runs"><thead><tr><th>#</th><th>run</th><th>by</th><th>status</th><th>input</th>'
        f'<th>output</th></tr></thead><tbody>{"".join(run_rows)}</tbody></table>'
        if run_rows else '<p class="empty">No runs yet.</p>'))
    if conv is not None and conv.messages:
        msgs = "".join(f"<tr><td>{e(m.role)}</td><td>{e(m.name or m.agent_id or '')}</td><td>{e(short(m.content, 300))}"
                       "</td></tr>" for m in conv.messages)
        parts.append(f'<h3>Messages</h3><table id="messages"><tbody>{msgs}</tbody></table>')
    parts.append("<h2>Session state</h2>" + (pretty(row.state) if row is not None else
                                              '<p class="empty">The session did not exist yet.</p>'))
    if row is not None and (row.name or row.summary):
        parts.append(f"<p>name: <b>{e(row.name or '')}</b></p>" + (
            f"<h3>Summary</h3>{pretty(row.summary)}" if row.summary else ""))
    parts.append("<h2>Memories</h2>" + memories_table(ctx, list(models.memories.memories.values())))
    wf_rows = []
    for wf in models.workflows.workflows.values():
        steps = ", ".join(f"{st.step}. {st.name or ''}" for st in wf.steps)
        wf_rows.append(f"<tr><td>{e(wf.workflow)}</td><td>{e(steps)}</td><td>{wf.next_step}"
                       f"{'' if wf.total is None else f' of {wf.total}'}</td><td>{'yes' if wf.done else 'no'}</td>"
                       f"<td>{e(short(wf.state, 200))}</td></tr>")
    parts.append("<h2>Workflows</h2>" + (
        '<table id="workflows"><thead><tr><th>workflow</th><th>steps done</th><th>next step</th><th>done</th>'
        f'<th>state</th></tr></thead><tbody>{"".join(wf_rows)}</tbody></table>'
        if wf_rows else '<p class="empty">No workflow steps yet.</p>'))
    return frame(ctx, f"{sid} at {s.point}", "".join(parts))


def memories_table(ctx: Context, rows: Sequence[Any]) -> str:
    if not rows:
        return '<p class="empty">No memories yet.</p>'
    body = "".join(
        f'<tr class="memory"><td>{e(short(m.memory, 300))}</td><td>{e(", ".join(m.topics))}</td>'
        f"<td>{e(m.created_by or '')}</td><td>{e(m.updated_by or '')}</td><td>{m.changes}</td>"
        f"<td>{e(q.utc(m.updated_at))}</td></tr>" for m in rows)
    return ('<table class="memories"><thead><tr><th>memory</th><th>topics</th><th>created by</th>'
            f"<th>updated by</th><th>changes</th><th>updated (UTC)</th></tr></thead><tbody>{body}</tbody></table>")


def diff_page(ctx: Context, session_id: str, a: str, b: str, changes: Sequence[Change]) -> str:
    link = ctx.links
    body = (f"<h1>Session <code>{e(session_id)}</code>: {e(a)} → {e(b)}</h1>"
            f'<p><a href="{e(link.session(session_id))}">timeline</a> · '
            f'<a href="{e(link.state(session_id, a))}">state at {e(a)}</a> · '
            f'<a href="{e(link.state(session_id, b))}">state at {e(b)}</a></p>{changes_table(changes, session_id)}')
    return frame(ctx, f"diff {a} → {b}", body)


def forked_page(ctx: Context, origin: str, at: str, new_id: str) -> str:
    link = ctx.links
    body = (f"<h1>Forked</h1><p>Session <code>{e(origin)}</code> up to {e(at)} was copied into a new session; "
            f"the original is untouched.</p><p>New session: "
            f'<a id="forked" href="{e(link.session(new_id))}">{e(new_id)}</a></p>')
    return frame(ctx, "Forked", body)


# --- agents, audit, memories -------------------------------------------------------------------


def agents_page(ctx: Context, found: Sequence[tuple[str, Any]]) -> str:
    rows = "".join(
        f'<tr><td><a href="{e(ctx.links.actor(key))}">{e(key)}</a></td><td>{c.events}</td>'
        f'<td>{e(", ".join(f"{t} ×{n}" for t, n in sorted(c.types.items())))}</td>'
        f"<td>{e(q.utc(c.first_at))}</td><td>{e(q.utc(c.last_at))}</td></tr>" for key, c in found)
    table = ('<table id="actors"><thead><tr><th>who</th><th>events</th><th>by type</th><th>first (UTC)</th>'
             f"<th>last (UTC)</th></tr></thead><tbody>{rows}</tbody></table>") if rows else \
        '<p class="empty">Nobody has written anything yet.</p>'
    return frame(ctx, "Agents", f"<h1>Who wrote what</h1>{table}")


def audit_page(ctx: Context, a: q.AuditPage) -> str:
    link = ctx.links
    rows = []
    for event in a.events:
        sid = event.actor.session_id or getattr(event.payload, "session_id", None)
        session = f'<a href="{e(link.session(sid))}">{e(sid)}</a>' if sid else ""
        state = (f'<a class="at" href="{e(link.state(sid, a.points[event.id]))}">state after</a>'
                 if sid and event.stream.startswith("session/") else "")
        rows.append(f'<tr class="event"><td class="time">{e(event.at.strftime("%Y-%m-%d %H:%M:%S"))}</td>'
                    f'<td class="type">{e(event.type)}</td><td>{e(event.stream)}</td><td>{session}</td>'
                    f"<td>{e(summary(event))}</td><td>{state}</td></tr>")
    counts = a.count
    by_type = ", ".join(f"{t} ×{n}" for t, n in sorted(counts.types.items())) if counts is not None else ""
    more = pager(a.page, a.pages, lambda n: link.actor(a.actor, page=n), counts.events if counts else None, "events")
    body = (f"<h1>What <code>{e(a.actor)}</code> wrote</h1><p>{e(by_type)}</p>{more}"
            '<table id="audit"><thead><tr><th>time (UTC)</th><th>type</th><th>stream</th><th>session</th>'
            f'<th>what</th><th></th></tr></thead><tbody>{"".join(rows)}</tbody></table>{more}')
    return frame(ctx, f"Audit {a.actor}", body)


def memories_page(ctx: Context, user_id: str, found: Sequence[q.MemoryHistory]) -> str:
    parts = [f"<h1>Memories of <code>{e(user_id)}</code></h1>"]
    for h in found:
        now = h.current
        head = (f'<p class="now">{e(short(now.memory, 500))}</p><p class="facts">topics: {e(", ".join(now.topics))}'
                f" · created by {e(now.created_by or '?')} · {now.changes} change(s)</p>"
                if now is not None else '<p class="now deleted">(deleted)</p>')
        steps = []
        for event in h.events:
            p: Any = event.payload
            what = short(getattr(p, "memory", None) or "", 200)
            if event.type == "memory.updated":
                what = f"{short(p.old_memory or '', 90)} → {short(p.memory, 120)}"
            steps.append(f'<li><span class="time">{e(event.at.strftime("%Y-%m-%d %H:%M:%S"))}</span> '
                         f'<span class="type">{e(event.type)}</span> by {author_chips(ctx, event)}: {e(what)}</li>')
        parts.append(f'<section class="memory" id="m-{e(h.memory_id)}"><h2><code>{e(h.memory_id)}</code></h2>'
                     f'{head}<ol class="history">{"".join(steps)}</ol></section>')
    if not found:
        parts.append('<p class="empty">No memories.</p>')
    return frame(ctx, f"Memories of {user_id}", "".join(parts))
