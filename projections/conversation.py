"""Conversation history: the runs and messages of each session, in the order they happened.

Agno keeps a session's runs inside the session; here each run is one `run.recorded` event and
this read model puts them back in order, so `get_session` is a dictionary lookup plus a list,
whatever the length of the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from msgspec import Raw

from eventlog import Event, MessageAppended, RunDeleted, RunRecorded, SessionDeleted
from projections.fold import EPOCH, Projection, epoch

_encode_run = msgspec.json.Encoder().encode
_decode_run = msgspec.json.Decoder(dict[str, Any]).decode


class RunEntry(msgspec.Struct, kw_only=True, gc=False):
    """One run of a session. The run is kept as its JSON (`body`) and decoded on each read of
    `run`: a decoded run is a tree of dicts, lists and strings (~1 KiB and several objects the
    cyclic GC has to walk on every full collection), its JSON one compact, untracked bytes
    object. A rebuild of a long log spent more time in the GC walking retained runs than in
    folding, and most of its memory on them; reads decode one run in well under a µs.

    `run` is therefore a fresh dict on every read (mutating it does not change the read
    model) and exactly what a rebuild from the stored JSON would give, live or not.
    `gc=False`: the fields are strings, ints and bytes, so an entry can never be part of a
    reference cycle and the GC need not track it."""

    run_id: str
    body: bytes  # the run (Agno's dict) as JSON
    # Who recorded the run: the event's actor. (The run's own ids, where Agno set them,
    # are in `run`; reading them here would mean parsing every run during a rebuild.)
    agent_id: str | None = None
    team_id: str | None = None
    workflow_id: str | None = None
    recorded_at: int = 0
    event_id: str = ""
    version: int = 0  # stream version of the event that last recorded this run

    @property
    def run(self) -> dict[str, Any]:
        """The run as Agno's dict (decoded from `body`; a new dict on every read)."""
        return _decode_run(self.body)


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
    schema = 5  # 4: runs kept as JSON bytes (RunEntry.body); 5: RunEntry ids are the actor's
    state_type = ConversationState
    handles = (RunRecorded, MessageAppended, RunDeleted, SessionDeleted)
    lazy_runs = True

    def initial(self) -> ConversationState:
        return ConversationState({})

    def apply(self, state: ConversationState, event: Event) -> ConversationState:
        p = event.payload
        if isinstance(p, RunRecorded):  # the bulk of a log: checked first
            _record_run(state, event, p)
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

    def fold(self, events: Iterable[Event], state: ConversationState | None = None) -> ConversationState:
        """`apply` over `events` as one loop: runs (the bulk of a log) are recorded inline,
        anything else goes through `apply`. Same result as applying one by one."""
        if not self.applies_as(ConversationProjection):  # a subclass's own `apply`: fold with it
            return super().fold(events, state)
        current = self.initial() if state is None else state
        sessions = current.sessions
        apply = self.apply
        encode = _encode_run
        for event in events:
            p = event.payload
            if not isinstance(p, RunRecorded):
                current = apply(current, event)
                continue
            run = p.run
            # a rebuild's run is its stored JSON already (eventlog.lazy_runs)
            body = bytes(run) if isinstance(run, Raw) else encode(run)
            a = event.actor
            sid = p.session_id
            conv = sessions.get(sid)
            if conv is None:
                conv = _conversation(current, sid)
            run_id = p.run_id
            at = event.at
            try:  # `epoch(at)` inlined; tests hold it to `epoch`
                since = at - EPOCH
                now = since.days * 86400 + since.seconds if since.days >= 0 else epoch(at)
            except TypeError:
                now = epoch(at)
            entry = RunEntry(
                run_id=run_id,
                body=body,
                agent_id=a.agent_id,
                team_id=a.team_id,
                workflow_id=a.workflow_id,
                recorded_at=now,
                event_id=event.id,
                version=event.version,
            )
            index = conv.index
            i = index.get(run_id)
            if i is None:
                index[run_id] = len(conv.runs)
                conv.runs.append(entry)
            else:
                conv.runs[i] = entry
                conv.rewrites += 1
        return current


def _record_run(state: ConversationState, event: Event, p: RunRecorded) -> None:
    conv = _conversation(state, p.session_id)
    a = event.actor
    entry = RunEntry(
        run_id=p.run_id,
        body=bytes(p.run) if isinstance(p.run, Raw) else _encode_run(p.run),
        agent_id=a.agent_id,
        team_id=a.team_id,
        workflow_id=a.workflow_id,
        recorded_at=epoch(event.at),
        event_id=event.id,
        version=event.version,
    )
    index = conv.index
    i = index.get(p.run_id)
    if i is None:
        index[p.run_id] = len(conv.runs)
        conv.runs.append(entry)
    else:
        conv.runs[i] = entry
        conv.rewrites += 1


def _conversation(state: ConversationState, session_id: str) -> Conversation:
    conv = state.sessions.get(session_id)
    if conv is None:
        conv = state.sessions[session_id] = Conversation(session_id=session_id, runs=[], messages=[], index={})
    return conv
