"""The UI as a plain ASGI app: routes, request parsing, and turning every failure into a page.

No web framework: an ASGI callable is what AgentOS (FastAPI/Starlette) mounts, what any ASGI
server runs and what `adapters.ui.server` serves for `eventlog ui`. Handlers are synchronous
(the store and read models are), so each request runs in a worker thread and never blocks the
event loop of an app this is mounted in. A mistake in a request is a 400/404 page, a store
that is away a 503, anything else a 500 page that shows no traceback (it is logged).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from adapters.agno.db import EventLogDb
from adapters.ui import assets, pages, points
from adapters.ui import queries as q
from eventlog import EventLogError, EventStore, StoreUnavailable, redact_url

log = logging.getLogger("adapters.ui")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY = 64 * 1024
SECURITY_HEADERS = [
    # No inline script or style, nothing from elsewhere: stored text can never become code.
    ("content-security-policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'self'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
]


class Forbidden(Exception):
    """A request this app does not allow (a fork on a read-only UI): a 403 page."""


@dataclass
class Request:
    method: str
    path: str  # below the mount point: "/", "/session", ...
    root: str  # the mount point ("" or "/eventlog")
    query: dict[str, list[str]]
    form: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def arg(self, name: str, default: str = "") -> str:
        values = self.query.get(name) or self.form.get(name)
        return values[0].strip() if values else default

    def required(self, name: str, what: str) -> str:
        value = self.arg(name)
        if not value:
            raise q.BadRequest(f"missing {name}= ({what})")
        return value


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


class EventLogUI:
    """The time-travel UI over one EventLogDb (live, or an `as_of` view). See `eventlog_ui`."""

    def __init__(self, db: EventLogDb, *, allow_fork: bool = False, poll_seconds: float = 2.0) -> None:
        self.db = db
        self.allow_fork = allow_fork
        self.poll_ms = max(200, int(poll_seconds * 1000))
        self.actors = q.ActorsTally()
        self.token = secrets.token_urlsafe(24)  # the fork form's: another site cannot post one
        self.routes: dict[tuple[str, str], Callable[[Request, pages.Context], Response]] = {
            ("GET", "/"): self.sessions,
            ("GET", "/sessions"): self.sessions,  # the home page's name: AgentOS strips a trailing "/"
            ("GET", "/session"): self.session,
            ("GET", "/state"): self.state,
            ("GET", "/diff"): self.diff,
            ("POST", "/fork"): self.fork,
            ("GET", "/agents"): self.agents,
            ("GET", "/audit"): self.audit,
            ("GET", "/memories"): self.memories,
            ("GET", "/api/events"): self.live_events,
        }

    # --- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return  # websockets: not served (the connection is refused by the server)
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_BODY:
                await self._send(send, Response(413, b"request body too large", "text/plain; charset=utf-8"))
                return
        request = _request(scope, body)
        response = await asyncio.to_thread(self.handle, request)
        await self._send(send, response)

    @staticmethod
    async def _send(send: Send, response: Response) -> None:
        headers = [(b"content-type", response.content_type.encode()),
                   (b"content-length", str(len(response.body)).encode())]
        headers += [(k.encode(), v.encode("latin-1")) for k, v in SECURITY_HEADERS + response.headers]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    # --- dispatch -------------------------------------------------------------------------

    def context(self, request: Request) -> pages.Context:
        view = str(self.db.point) if self.db.point is not None else None
        return pages.Context(links=pages.Links(request.root), store_url=redact_url(self.db.store.url), view=view,
                             allow_fork=self.allow_fork, token=self.token, poll_ms=self.poll_ms)

    def handle(self, request: Request) -> Response:
        """The response to one request (runs in a worker thread)."""
        if request.method == "GET" and request.path == "/static/app.js":
            return Response(200, assets.SCRIPT.encode(), "text/javascript; charset=utf-8")
        if request.method == "GET" and request.path == "/static/app.css":
            return Response(200, assets.STYLE.encode(), "text/css; charset=utf-8")
        ctx = self.context(request)
        route = self.routes.get((request.method, request.path))
        api = request.path.startswith("/api/")
        try:
            if route is None:
                if any(path == request.path for _, path in self.routes):
                    return self.error(ctx, 405, f"{request.method} is not allowed here", api)
                raise q.NotFound(f"no page {request.path!r}")
            return route(request, ctx)
        except q.NotFound as exc:
            return self.error(ctx, 404, str(exc), api)
        except q.BadRequest as exc:
            return self.error(ctx, 400, str(exc), api)
        except Forbidden as exc:
            return self.error(ctx, 403, str(exc), api)
        except StoreUnavailable as exc:
            return self.error(ctx, 503, redact_url(str(exc)), api)
        except EventLogError as exc:  # an invalid id or stream name, a point not in the log ...
            return self.error(ctx, 400, redact_url(str(exc)), api)
        except Exception:
            log.exception("eventlog ui: %s %s failed", request.method, request.path)
            return self.error(ctx, 500, "internal error (see the server's log)", api)

    def error(self, ctx: pages.Context, status: int, message: str, api: bool) -> Response:
        if api:
            return Response(status, json.dumps({"error": message}).encode(), "application/json")
        return Response(status, pages.error_page(ctx, status, message).encode())

    @staticmethod
    def html(text: str) -> Response:
        return Response(200, text.encode())

    # --- pages ----------------------------------------------------------------------------

    def sessions(self, request: Request, ctx: pages.Context) -> Response:
        user, agent, query = request.arg("user"), request.arg("agent"), request.arg("q")
        page = q.page_number(request.arg("page")) or 1
        found = q.sessions(self.db, user=user, agent=agent, query=query, page=page)
        return self.html(pages.sessions_page(ctx, found, user=user, agent=agent, query=query))

    def _filters(self, request: Request) -> tuple[str, str]:
        return request.arg("type"), request.arg("who")

    def session(self, request: Request, ctx: pages.Context) -> Response:
        sid = request.required("id", "a session id")
        type_filter, who = self._filters(request)
        found = q.timeline(self.db, sid, types={type_filter} if type_filter else None, who=who or None,
                           page=q.page_number(request.arg("page")))
        return self.html(pages.timeline_page(ctx, found, type_filter=type_filter, who=who))

    def live_events(self, request: Request, ctx: pages.Context) -> Response:
        sid = request.required("session", "a session id")
        after = request.arg("after", "0")
        if not after.isdigit():
            raise q.BadRequest(f"bad after={after!r}: a stream version (0, 1, 2 ...)")
        type_filter, who = self._filters(request)
        events, last, points = q.events_after(self.db, sid, int(after), types={type_filter} if type_filter else None,
                                              who=who or None)
        doc = {"last": last, "count": len(events), "html": pages.event_rows(ctx, sid, events, points)}
        return Response(200, json.dumps(doc).encode(), "application/json")

    def state(self, request: Request, ctx: pages.Context) -> Response:
        sid = request.required("session", "a session id")
        found = points.state_at(self.db, sid, request.required("at", "a position, an ISO time or an event id"))
        return self.html(pages.state_page(ctx, found, q.page_number(request.arg("runs"))))

    def diff(self, request: Request, ctx: pages.Context) -> Response:
        sid = request.required("session", "a session id")
        a = request.required("a", "the point to diff from")
        b = request.required("b", "the point to diff to")
        return self.html(pages.diff_page(ctx, sid, a, b, points.diff_points(self.db, sid, a, b)))

    def fork(self, request: Request, ctx: pages.Context) -> Response:
        if not self.allow_fork:
            raise Forbidden("this UI is read-only: start it with --allow-fork (eventlog_ui(db, allow_fork=True)) "
                            "to fork sessions")
        if self.db.point is not None:
            raise Forbidden(f"this is a view of the past (as of {self.db.point!s}): nothing can be written to it")
        if not hmac.compare_digest(request.arg("token"), self.token):
            raise Forbidden("the fork form has expired or was not sent by this UI: reload the page")
        sid = request.required("session", "a session id")
        at = request.required("at", "the point to fork from")
        new_id = points.fork(self.db, sid, at)
        response = self.html(pages.forked_page(ctx, sid, at, new_id))
        response.status = 303
        response.headers.append(("location", ctx.links.session(new_id)))
        return response

    def agents(self, request: Request, ctx: pages.Context) -> Response:
        return self.html(pages.agents_page(ctx, self.actors.counts(self.db)))

    def audit(self, request: Request, ctx: pages.Context) -> Response:
        key = request.required("actor", "agent:<id>, team:<id>, workflow:<id> or user:<id>")
        found = q.audit_page(self.db, self.actors, key, page=q.page_number(request.arg("page")) or 1)
        return self.html(pages.audit_page(ctx, found))

    def memories(self, request: Request, ctx: pages.Context) -> Response:
        user = request.required("user", "a user id")
        return self.html(pages.memories_page(ctx, user, q.memories(self.db, user)))


def _request(scope: Scope, body: bytes) -> Request:
    """The parts of an ASGI scope the routes need. Under a mount, `path` may or may not still
    hold the mount prefix (`root_path`), depending on the framework's version: both work."""
    root = str(scope.get("root_path") or "").rstrip("/")
    path = str(scope.get("path") or "/")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root):]
    path = path or "/"
    if len(path) > 1:
        path = path.rstrip("/")
    raw_query = bytes(scope.get("query_string") or b"").decode("latin-1")
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
    form: dict[str, list[str]] = {}
    if body and headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = parse_qs(body.decode("latin-1"), keep_blank_values=True, encoding="utf-8", errors="replace")
    return Request(method=str(scope.get("method", "GET")).upper(), path=path, root=root,
                   query=parse_qs(raw_query, keep_blank_values=True, encoding="utf-8", errors="replace"),
                   form=form, headers=headers)


class Redirect:
    """An ASGI app answering every request with a redirect to `location`."""

    def __init__(self, location: str) -> None:
        self.location = location

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 307,
                        "headers": [(b"location", self.location.encode()), (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})


def mount_ui(app: Any, path: str, db: EventLogUI | EventLogDb | EventStore | str | None = None,
             **options: Any) -> EventLogUI:
    """`app.mount(path, eventlog_ui(db))` on a Starlette/FastAPI/AgentOS app, and `path` itself
    redirected to the sessions page: AgentOS strips trailing slashes, so `/eventlog/` turns
    into `/eventlog`, which a mount alone would redirect back to `/eventlog/` for ever."""
    ui = db if isinstance(db, EventLogUI) else eventlog_ui(db, **options)
    path = "/" + path.strip("/")
    app.add_route(path, Redirect(f"{path}/sessions"), include_in_schema=False)
    app.mount(path, ui)
    return ui


def eventlog_ui(db: EventLogDb | EventStore | str | None = None, *, allow_fork: bool = False,
                poll_seconds: float = 2.0) -> EventLogUI:
    """The time-travel UI as an ASGI app, to serve or to mount:

        app = agent_os.get_app()
        app.mount("/eventlog", eventlog_ui(db))

    `db`: an EventLogDb (an `as_of` view shows the past and never moves), an open store, or a
    store URL (None: the environment's store, as `open_store` picks it). Read-only unless
    `allow_fork`: then a point's page can fork a new session from it."""
    if not isinstance(db, EventLogDb):
        db = EventLogDb(store=db) if isinstance(db, EventStore) else EventLogDb(db)
    return EventLogUI(db, allow_fork=allow_fork, poll_seconds=poll_seconds)
