"""Audit: which events each actor (agent, team, user, run) wrote, and when.

Two parts. `audit()` is a streaming query over the log (so an audit trail never depends on a
derived state that could be wrong); `ActorsProjection` is a small fold of per-actor counts for
overviews (`eventlog stats`) that costs a few bytes per actor, not per event.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

import msgspec

from eventlog import Actor, Event, EventStore
from eventlog.events import TYPE_OF
from eventlog.names import session_stream
from projections.fold import Projection


def matches(
    event: Event,
    *,
    agent_id: str | None = None,
    team_id: str | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    run_id: str | None = None,
    workflow_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    types: set[str] | None = None,
) -> bool:
    a = event.actor
    return (
        (agent_id is None or a.agent_id == agent_id)
        and (team_id is None or a.team_id == team_id)
        and (user_id is None or a.user_id == user_id)
        and (session_id is None or a.session_id == session_id
             or getattr(event.payload, "session_id", None) == session_id)
        and (run_id is None or a.run_id == run_id)
        and (workflow_id is None or a.workflow_id == workflow_id)
        and (since is None or event.at >= since)
        and (until is None or event.at <= until)
        and (types is None or event.type in types)
    )


def audit(
    store: EventStore,
    *,
    agent_id: str | None = None,
    team_id: str | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    run_id: str | None = None,
    workflow_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    types: set[str] | None = None,
) -> Iterator[Event]:
    """Events matching every given filter, in log order, streamed."""
    source = store.read_all(until=until) if until is not None else store.read_all()
    for event in source:
        if matches(event, agent_id=agent_id, team_id=team_id, user_id=user_id, session_id=session_id,
                   run_id=run_id, workflow_id=workflow_id, since=since, until=until, types=types):
            yield event


def session_events(store: EventStore, session_id: str) -> Iterator[Event]:
    """Just one session's own stream (cheap: no scan of the log)."""
    return store.read(session_stream(session_id))


class ActorCount(msgspec.Struct, kw_only=True, gc=False):
    """`gc=False`: counts, times and a dict of str -> int can form no reference cycle, so the
    cyclic GC need not track (and walk) one object per actor."""

    events: int = 0
    types: dict[str, int] = {}
    first_at: datetime | None = None
    last_at: datetime | None = None


class ActorsState(msgspec.Struct):
    actors: dict[str, ActorCount] = {}  # "agent:<id>", "team:<id>", "user:<id>", "workflow:<id>"


class ActorsProjection(Projection[ActorsState]):
    name = "actors"
    schema = 1
    state_type = ActorsState
    lazy_runs = True  # reads no run bodies

    def initial(self) -> ActorsState:
        return ActorsState({})

    def apply(self, state: ActorsState, event: Event) -> ActorsState:
        # Called for every event of the log: plain locals and inline counting, no tuples or
        # generator per event.
        a = event.actor
        agent, team, user, workflow = a.agent_id, a.team_id, a.user_id, a.workflow_id
        if agent is None and team is None and user is None and workflow is None:
            return state
        kind_of = TYPE_OF.get(type(event.payload))
        if kind_of is None or kind_of == "unknown.kept":
            kind_of = event.type
        at = event.at
        actors = state.actors
        if agent is not None:
            _count(actors, f"agent:{agent}", kind_of, at)
        if team is not None:
            _count(actors, f"team:{team}", kind_of, at)
        if user is not None:
            _count(actors, f"user:{user}", kind_of, at)
        if workflow is not None:
            _count(actors, f"workflow:{workflow}", kind_of, at)
        return state

    def fold(self, events: Iterable[Event], state: ActorsState | None = None) -> ActorsState:
        """`apply` over `events` as one loop. Most events of a log come from the actor of the
        event before (a run's events, a session's turns), so events are tallied per stretch
        of one actor (equal fields) and each stretch is added to that actor's counts once:
        an event costs a comparison and one increment (keyed by its payload's type, named
        once per stretch) instead of building keys and updating two or more counts. Same
        counts, same order of types, as `apply`."""
        if not self.applies_as(ActorsProjection):  # a subclass's own `apply`: fold with it
            return super().fold(events, state)
        current = self.initial() if state is None else state
        actors = current.actors
        named = _named_types()
        last: Actor | None = None
        counts: list[ActorCount] = []
        tally: dict[type | str, int] = {}  # payload type (or, for one named per event, its name)
        n = 0
        last_event: Event | None = None
        for event in events:
            a = event.actor
            if a != last:
                if n:
                    _add_stretch(counts, tally, n, last_event)
                    tally = {}
                    n = 0
                last = a
                counts = _counters(actors, a, event.at)
            if not counts:
                continue
            kind = type(event.payload)
            key: type | str = kind if kind in named else event.type
            tally[key] = tally.get(key, 0) + 1
            n += 1
            last_event = event
        if n:
            _add_stretch(counts, tally, n, last_event)
        return current


_named: dict[type, str] = {}


def _named_types() -> dict[type, str]:
    """Payload types whose name is fixed (`TYPE_OF`, less the kept unknowns, which carry their
    own): rebuilt whenever a type joins `TYPE_OF`."""
    global _named
    if len(_named) != len(TYPE_OF) - 1:
        _named = {cls: name for cls, name in TYPE_OF.items() if name != "unknown.kept"}
    return _named


def _counters(actors: dict[str, ActorCount], a: Actor, at: datetime) -> list[ActorCount]:
    """The counts an event by `a` adds to (made, first seen `at`, where new)."""
    counts = []
    if a.agent_id is not None:
        counts.append(_counter(actors, f"agent:{a.agent_id}", at))
    if a.team_id is not None:
        counts.append(_counter(actors, f"team:{a.team_id}", at))
    if a.user_id is not None:
        counts.append(_counter(actors, f"user:{a.user_id}", at))
    if a.workflow_id is not None:
        counts.append(_counter(actors, f"workflow:{a.workflow_id}", at))
    return counts


def _add_stretch(counts: list[ActorCount], tally: dict[type | str, int], n: int, last: Event | None) -> None:
    named = _named_types()
    kinds: dict[str, int] = {}  # by name, in order of first appearance (as `apply` counts)
    for key, k in tally.items():
        name = key if isinstance(key, str) else named[key]
        kinds[name] = kinds.get(name, 0) + k
    last_at = last.at if last is not None else None
    for count in counts:
        count.events += n
        types = count.types
        for kind_of, k in kinds.items():
            types[kind_of] = types.get(kind_of, 0) + k
        count.last_at = last_at


def _counter(actors: dict[str, ActorCount], key: str, at: datetime) -> ActorCount:
    count = actors.get(key)
    if count is None:
        count = actors[key] = ActorCount(first_at=at)
    return count


def _count(actors: dict[str, ActorCount], key: str, kind_of: str, at: datetime) -> None:
    count = actors.get(key)
    if count is None:
        count = actors[key] = ActorCount(first_at=at)
    count.events += 1
    types = count.types
    types[kind_of] = types.get(kind_of, 0) + 1
    count.last_at = at
