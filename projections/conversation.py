"""Conversation history: the runs and messages of each session, in the order they happened.

Agno keeps a session's runs inside the session; here each run is one `run.recorded` event and
this read model puts them back in order, so `get_session` is a dictionary lookup plus a list,
whatever the length of the log.
"""

from __future__ import annotations

from typing import Any

import msgspec

from eventlog import Event, MessageAppended, RunDeleted, RunRecorded, SessionDeleted
from projections.fold import Projection, epoch


class RunEntry(msgspec.Struct, kw_only=True):
    run_id: str
    run: dict[str, Any]
    agent_id: str | None = None
    team_id: str | None = None
    workflow_id: str | None = None
    recorded_at: int = 0
    event_id: str = ""
    version: int = 0  # stream version of the event that last recorded this run


class MessageEntry(msgspec.Struct, kw_only=True):
    role: str
    content: Any = None
    name: str | None = None
    run_id: str | None = None
    message_id: str | None = None
    agent_id: str | None = None
    at: int = 0
    event_id: str = ""


class Conversation(msgspec.Struct, kw_only=True):
    session_id: str
    runs: list[RunEntry] = []
    messages: list[MessageEntry] = []
    index: dict[str, int] = {}  # run id -> place in `runs`
    rewrites: int = 0  # runs replaced or deleted so far (0: the list has only grown)

    def run_index(self, run_id: str) -> int:
        return self.index.get(run_id, -1)

    def last_runs(self, n: int | None) -> list[RunEntry]:
        if n is None:
            return list(self.runs)
        return self.runs[-n:] if n > 0 else []


class ConversationState(msgspec.Struct):
    sessions: dict[str, Conversation] = {}


class ConversationProjection(Projection[ConversationState]):
    name = "conversation"
    schema = 3
    state_type = ConversationState
    handles = (RunRecorded, MessageAppended, RunDeleted, SessionDeleted)

    def initial(self) -> ConversationState:
        return ConversationState({})

    def apply(self, state: ConversationState, event: Event) -> ConversationState:
        p = event.payload
        if isinstance(p, RunRecorded):
            conv = _conversation(state, p.session_id)
            entry = RunEntry(
                run_id=p.run_id,
                run=p.run,
                agent_id=event.actor.agent_id or p.run.get("agent_id"),
                team_id=event.actor.team_id or p.run.get("team_id"),
                workflow_id=event.actor.workflow_id or p.run.get("workflow_id"),
                recorded_at=epoch(event.at),
                event_id=event.id,
                version=event.version,
            )
            i = conv.index.get(p.run_id, -1)
            if i >= 0:
                conv.runs[i] = entry
                conv.rewrites += 1
            else:
                conv.index[p.run_id] = len(conv.runs)
                conv.runs.append(entry)
        elif isinstance(p, MessageAppended):
            _conversation(state, p.session_id).messages.append(
                MessageEntry(
                    role=p.role,
                    content=p.content,
                    name=p.name,
                    run_id=p.run_id,
                    message_id=p.message_id,
                    agent_id=event.actor.agent_id,
                    at=epoch(event.at),
                    event_id=event.id,
                )
            )
        elif isinstance(p, RunDeleted):
            conv_or_none = state.sessions.get(p.session_id)
            if conv_or_none is not None:
                i = conv_or_none.run_index(p.run_id)
                if i >= 0:
                    del conv_or_none.runs[i]
                    conv_or_none.rewrites += 1
                    conv_or_none.index = {r.run_id: k for k, r in enumerate(conv_or_none.runs)}
        elif isinstance(p, SessionDeleted):
            state.sessions.pop(p.session_id, None)
        return state


def _conversation(state: ConversationState, session_id: str) -> Conversation:
    conv = state.sessions.get(session_id)
    if conv is None:
        conv = state.sessions[session_id] = Conversation(session_id=session_id, runs=[], messages=[], index={})
    return conv
