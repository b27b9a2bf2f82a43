"""Audit: which events each actor (agent, team, user, run) wrote, and when.

Two parts. `audit()` is a streaming query over the log (so an audit trail never depends on a
derived state that could be wrong); `ActorsProjection` is a small fold of per-actor counts for
overviews (`eventlog stats`) that costs a few bytes per actor, not per event.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import msgspec

from eventlog import Event, EventStore
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


class ActorCount(msgspec.Struct, kw_only=True):
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

    def initial(self) -> ActorsState:
        return ActorsState({})

    def apply(self, state: ActorsState, event: Event) -> ActorsState:
        a = event.actor
        if a.agent_id is None and a.team_id is None and a.user_id is None and a.workflow_id is None:
            return state
        kind_of = event.type
        actors = state.actors
        for key in (f"agent:{a.agent_id}" if a.agent_id is not None else None,
                    f"team:{a.team_id}" if a.team_id is not None else None,
                    f"user:{a.user_id}" if a.user_id is not None else None,
                    f"workflow:{a.workflow_id}" if a.workflow_id is not None else None):
            if key is None:
                continue
            count = actors.get(key)
            if count is None:
                count = actors[key] = ActorCount(first_at=event.at)
            count.events += 1
            count.types[kind_of] = count.types.get(kind_of, 0) + 1
            count.last_at = event.at
        return state
