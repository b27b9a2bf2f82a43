"""What the web UI shows, read from the log and the read models (no HTML here).

Every page reads through these queries over an `EventLogDb` (live, or an `as_of` view whose point
bounds everything shown): the sessions list comes from the sessions read model through
`EventLogDb.get_sessions` (a page, never a scan of the log); a timeline reads one session's
stream (the state at a point and diffs are in `points`); an audit streams the log to the end
of its page. A mistake in what was asked raises `NotFound` or `BadRequest`, which
the app turns into a 404/400 page.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from adapters.agno.db import EventLogDb
from adapters.agno.rows import session_row
from eventlog import Cursor, Event, EventStore, codec
from eventlog.integrity import Break, verify
from eventlog.names import session_stream, user_stream
from projections import SessionsProjection, UserMemoriesProjection
from projections.audit import ActorCount, ActorsProjection, matches
from projections.timetravel import point_filter

SESSIONS_PER_PAGE = 50
EVENTS_PER_PAGE = 200
AUDIT_PER_PAGE = 100
AUTHOR_KINDS = ("agent", "team", "workflow", "user", "run")
TIME_LIKE = re.compile(r"^\d{4}-\d{1,2}(-\d{1,2})?([T ].*)?$")  # never a UUID (8 hex digits first)


class NotFound(Exception):
    """What was asked for does not exist (in this view): a 404 page."""


class BadRequest(Exception):
    """What was asked for cannot be understood (a bad page, position or time): a 400 page."""


def pages_of(total: int, per_page: int) -> int:
    return max(1, math.ceil(total / per_page))


def page_number(text: str | None, *, last: int | None = None) -> int | None:
    """A 1-based page number from a query string (None when absent)."""
    if text is None or text == "":
        return None
    if not text.isdigit() or int(text) < 1:
        raise BadRequest(f"bad page {text!r}: pages are numbered 1, 2, 3 ...")
    page = int(text)
    if last is not None and page > last:
        raise BadRequest(f"page {page} is past the last page ({last})")
    return page


# --- sessions ---------------------------------------------------------------------------------


@dataclass
class SessionsPage:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int


def sessions(db: EventLogDb, *, user: str | None = None, agent: str | None = None, query: str | None = None,
             page: int = 1, limit: int = SESSIONS_PER_PAGE) -> SessionsPage:
    """Sessions newest first, one page of them. `query` is a session id (exact) or else part
    of a session's name; `agent` matches the agent, team or workflow that owns a session."""
    if query:
        found = db.get_session(query, user_id=user or None, deserialize=False)
        row = found if isinstance(found, dict) else None
        owners = (row.get("agent_id"), row.get("team_id"), row.get("workflow_id")) if row is not None else ()
        if row is not None and (not user or row.get("user_id") == user) and (not agent or agent in owners):
            return SessionsPage([row], 1, 1, 1)
    rows, total = db.get_sessions(user_id=user or None, component_id=agent or None,
                                  session_name=query or None, limit=limit, page=page, sort_by="updated_at",
                                  sort_order="desc", deserialize=False, include_runs=False)
    pages = pages_of(total, limit)
    if page > pages:
        raise BadRequest(f"page {page} is past the last page ({pages})")
    return SessionsPage(list(rows), total, page, pages)


def session_row_of(events: list[Event], session_id: str) -> dict[str, Any] | None:
    """The session's Agno row (no runs) folded from its own events: what the header shows, as
    of the view, without asking the read models for a copy of every run."""
    row = SessionsProjection().fold(events).sessions.get(session_id)
    return session_row(row, None) if row is not None else None


def session_name(row: dict[str, Any]) -> str | None:
    data = row.get("session_data")
    name = data.get("session_name") if isinstance(data, dict) else None
    return str(name) if name is not None else None


# --- one session's events -----------------------------------------------------------------------


def bounded(db: EventLogDb, events: Iterable[Event]) -> Iterator[Event]:
    """`events` as far as the view reaches (all of them on a live db)."""
    if db.point is None:
        yield from events
        return
    keep = point_filter(db.store, db.point)
    for event in events:
        if keep(event):
            yield event


def session_events(db: EventLogDb, session_id: str) -> list[Event]:
    """The session's stream in order, up to the view's point; NotFound if it has none."""
    stream = session_stream(session_id)
    if db.store.head(stream).version == 0:
        raise NotFound(f"unknown session {session_id!r}")
    events = list(bounded(db, db.store.read(stream)))
    if not events:
        raise NotFound(f"session {session_id!r} did not exist yet at {db.point!s}")
    return events


def author(event: Event) -> dict[str, str]:
    """Who wrote an event: the actor's agent, team, workflow, user and run (those set)."""
    a = event.actor
    found = {"agent": a.agent_id, "team": a.team_id, "workflow": a.workflow_id, "user": a.user_id, "run": a.run_id}
    return {k: v for k, v in found.items() if v}


def writer(event: Event) -> str:
    """The one name to show for who wrote an event: its agent, else team, workflow, user."""
    who = author(event)
    for kind in ("agent", "team", "workflow", "user"):
        if kind in who:
            return f"{kind}:{who[kind]}"
    return ""


def point_of(store: EventStore, event: Event) -> str:
    """The point just after `event` as URL text: its position on a single-partition store
    (cheap to resolve), else its id (a partitioned or fallback store numbers per partition)."""
    if store.partitions == 1 and event.partition == 0:
        return str(event.position)
    return event.id


@dataclass
class ChainStatus:
    """The session stream's hash chain: intact, or the first event that breaks it."""

    ok: bool
    events: int
    first_bad: Break | None = None


def _break(kind: str, detail: str, event: Event) -> Break:
    return Break(kind=kind, detail=detail, stream=event.stream, version=event.version, id=event.id,
                 position=event.position, partition=event.partition)


def check_chain(events: list[Event]) -> ChainStatus:
    """Versions 1, 2, 3 ..., each `prev_hash` the hash before it, each hash over the event's
    canonical bytes: the per-stream part of `eventlog.integrity.verify`, on one stream."""
    last_hash = ""
    for expected, event in enumerate(events, start=1):
        found = None
        if event.version != expected:
            found = _break("removed" if event.version > expected else "inserted", f"version {expected} was due",
                           event)
        elif event.prev_hash != last_hash:
            found = _break("inserted", "prev_hash does not match the previous event's hash", event)
        elif codec.compute_hash(event) != event.hash:
            found = _break("edited", "content does not match its hash", event)
        if found is not None:
            return ChainStatus(False, len(events), found)
        last_hash = event.hash
    return ChainStatus(True, len(events))


def chain_of(store: EventStore, events: list[Event]) -> ChainStatus:
    """The badge: the stream's own check, and where it finds a break, the log-wide
    `verify` to confirm it (a payload upcast on reading is no longer the bytes that were
    hashed: only the walk over the stored payloads can tell that from an edit)."""
    status = check_chain(events)
    if status.ok:
        return status
    report = verify(store)
    if report.ok:
        return ChainStatus(True, len(events))
    found = report.first_break
    if found is not None and found.stream == events[0].stream:
        return ChainStatus(False, len(events), found)
    return status


@dataclass
class Timeline:
    session_id: str
    row: dict[str, Any] | None
    events: list[Event]  # this page's, filtered
    total: int  # events matching the filters
    stream_events: int
    page: int
    pages: int
    last_version: int
    types: list[str]  # every type in the stream, for the filter
    authors: list[str]  # every writer in the stream, for the filter
    chain: ChainStatus
    points: dict[str, str] = field(default_factory=dict)  # event id -> point text


def keep_event(event: Event, types: set[str] | None, who: str | None) -> bool:
    """The timeline's filters: a set of types, and an author `kind:id` (or a bare id)."""
    if types and event.type not in types:
        return False
    if who:
        kind, _, ident = who.partition(":")
        found = author(event)
        if ident:
            return found.get(kind) == ident
        return who in found.values()
    return True


def timeline(db: EventLogDb, session_id: str, *, types: set[str] | None = None, who: str | None = None,
             page: int | None = None, per_page: int = EVENTS_PER_PAGE) -> Timeline:
    """One page of the session's events in stream order (the last page unless `page`)."""
    events = session_events(db, session_id)
    chain = chain_of(db.store, events)
    kept = [e for e in events if keep_event(e, types, who)]
    pages = pages_of(len(kept), per_page)
    if page is not None and page > pages:
        raise BadRequest(f"page {page} is past the last page ({pages})")
    page = pages if page is None else page
    shown = kept[(page - 1) * per_page: page * per_page]
    return Timeline(
        session_id=session_id, row=session_row_of(events, session_id), events=shown, total=len(kept),
        stream_events=len(events), page=page, pages=pages, last_version=events[-1].version,
        types=sorted({e.type for e in events}), authors=sorted({w for e in events if (w := writer(e))}),
        chain=chain, points={e.id: point_of(db.store, e) for e in shown},
    )


def events_after(db: EventLogDb, session_id: str, after_version: int, *, types: set[str] | None = None,
                 who: str | None = None) -> tuple[list[Event], int, dict[str, str]]:
    """Live updates: the session's events after `after_version` that pass the filters, the
    stream's last version, and each shown event's point. A view never moves: nothing new."""
    stream = session_stream(session_id)
    if db.store.head(stream).version == 0:
        raise NotFound(f"unknown session {session_id!r}")
    if db.point is not None:
        return [], after_version, {}
    new = list(db.store.read(stream, after_version + 1))
    last = new[-1].version if new else after_version
    kept = [e for e in new if keep_event(e, types, who)]
    return kept, last, {e.id: point_of(db.store, e) for e in kept}


# --- audit and memories -------------------------------------------------------------------------


class ActorsTally:
    """Per agent, team, workflow and user: how many events of which types, first and last
    time — `ActorsProjection` folded by the UI itself (the shared read index keeps no such
    model), once over the log and then only over what was appended since."""

    def __init__(self) -> None:
        self.projection = ActorsProjection()
        self.state = self.projection.initial()
        self.cursor = Cursor()
        self.lock = threading.Lock()

    def counts(self, db: EventLogDb) -> list[tuple[str, ActorCount]]:
        keep = point_filter(db.store, db.point) if db.point is not None else None
        with self.lock:
            for event in db.store.read_all(after=self.cursor):
                self.cursor = self.cursor.advanced(event)
                if keep is None or keep(event):
                    self.projection.apply(self.state, event)
            return sorted(self.state.actors.items())


def parse_actor(key: str) -> tuple[str, str]:
    kind, _, ident = key.partition(":")
    if kind not in ("agent", "team", "workflow", "user") or not ident:
        raise BadRequest(f"bad actor {key!r}: agent:<id>, team:<id>, workflow:<id> or user:<id>")
    return kind, ident


@dataclass
class AuditPage:
    actor: str
    count: ActorCount | None
    events: list[Event]
    page: int
    pages: int
    points: dict[str, str]


def audit_page(db: EventLogDb, tally: ActorsTally, key: str, *, page: int = 1,
               per_page: int = AUDIT_PER_PAGE) -> AuditPage:
    """What one actor wrote, in log order, a page at a time (one streaming pass over the log,
    stopped at the end of the page)."""
    kind, ident = parse_actor(key)
    counts = dict(tally.counts(db))
    count = counts.get(key)
    if count is None:
        raise NotFound(f"no events by {key!r}" + (f" up to {db.point!s}" if db.point else ""))
    pages = pages_of(count.events, per_page)
    if page > pages:
        raise BadRequest(f"page {page} is past the last page ({pages})")
    wanted: dict[str, Any] = {f"{kind}_id": ident}
    skip, shown = (page - 1) * per_page, []
    for event in bounded(db, db.store.read_all()):
        if matches(event, **wanted):
            if skip:
                skip -= 1
                continue
            shown.append(event)
            if len(shown) == per_page:
                break
    return AuditPage(key, count, shown, page, pages, {e.id: point_of(db.store, e) for e in shown})


@dataclass
class MemoryHistory:
    memory_id: str
    current: Any  # MemoryRow, or None once deleted
    events: list[Event]


def memories(db: EventLogDb, user_id: str) -> list[MemoryHistory]:
    """A user's memories as they are (in this view) and every event that wrote each one."""
    stream = user_stream(user_id)
    if db.store.head(stream).version == 0:
        return []  # a user no agent remembered anything about yet: an empty page, not an error
    events = list(bounded(db, db.store.read(stream)))
    state = UserMemoriesProjection().fold(events)
    by_id: dict[str, MemoryHistory] = {}
    for event in events:
        memory_id = getattr(event.payload, "memory_id", None)
        if memory_id is None:  # memory.cleared / user.forgotten: part of every memory's story
            for history in by_id.values():
                history.events.append(event)
            continue
        history = by_id.setdefault(memory_id, MemoryHistory(memory_id, None, []))
        history.events.append(event)
    for memory_id, history in by_id.items():
        history.current = state.memories.get(memory_id)
    return sorted(by_id.values(), key=lambda h: h.events[-1].at, reverse=True)


def utc(when: datetime | int | float | None) -> str:
    """A time as `YYYY-MM-DD HH:MM:SS` UTC (epoch seconds or a datetime)."""
    if when is None or when == 0:
        return ""
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(float(when), tz=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
