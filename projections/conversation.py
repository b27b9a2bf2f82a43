"""Conversation history: the runs and messages of each session, in the order they happened.

Agno keeps a session's runs inside the session; here each run is one `run.recorded` event and
this read model puts them back in order, so `get_session` is a dictionary lookup plus a list,
whatever the length of the log.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec
from msgspec import Raw

from eventlog import Event, MessageAppended, RunDeleted, RunRecorded, SessionDeleted
from eventlog.lazy_runs import LazyRunRecorded
from projections.fold import Projection, epoch

_encode_run = msgspec.json.Encoder().encode
_decode_json = msgspec.json.Decoder().decode  # untyped: ~15 % faster than dict[str, Any] on runs


class RunEntry(msgspec.Struct, gc=False):
    """One run of a session. The run is kept as its JSON (`body`) and decoded on each read of
    `run`: a decoded run is a tree of dicts, lists and strings (~1 KiB and several objects the
    cyclic GC has to walk on every full collection), its JSON one compact, untracked bytes
    object. A rebuild of a long log spent more time in the GC walking retained runs than in
    folding, and most of its memory on them; reads decode one run in well under a µs.

    `run` is therefore a fresh dict on every read (mutating it does not change the read
    model) and exactly what a rebuild from the stored JSON would give, live or not.
    `gc=False`: the fields are strings, ints, bytes and a datetime, so an entry can never be
    part of a reference cycle and the GC need not track it."""

    run_id: str
    body: bytes  # the run (Agno's dict) as JSON
    # Who recorded the run: the event's actor. (The run's own ids, where Agno set them,
    # are in `run`; reading them here would mean parsing every run during a rebuild.)
    agent_id: str | None = None
    team_id: str | None = None
    workflow_id: str | None = None
    at: datetime | None = None  # the event's time, kept as decoded (`recorded_at` is read far
    # less often than a rebuild would have to compute it)
    event_id: str = ""
    version: int = 0  # stream version of the event that last recorded this run

    @property
    def recorded_at(self) -> int:
        """When the run was recorded, in whole seconds since the epoch (Agno's unit)."""
        return epoch(self.at) if self.at is not None else 0

    @property
    def run(self) -> dict[str, Any]:
        """The run as Agno's dict (decoded from `body`; a new dict on every read)."""
        run = _decode_json(self.body)
        if type(run) is not dict:  # (a run is appended as an object; anything else is not a run)
            raise msgspec.ValidationError(f"run {self.run_id!r} is stored as {type(run).__name__}, not an object")
        return run


_decode_msgpack = msgspec.msgpack.Decoder().decode
_encode_msgpack = msgspec.msgpack.Encoder().encode


class SnapshotRunEntry(RunEntry, gc=False):
    """A run as a snapshot of the conversation holds it: the run as MessagePack, a `Raw`
    view into the snapshot's buffer, so decoding a snapshot makes no copy per run (a cold
    read of a 1,000-run session used to copy a megabyte into 1,000 bytes objects), and a run
    decodes from MessagePack a little faster than from its JSON (~10 % measured in fresh
    processes, where allocating the dicts is most of it). A snapshot written before this
    form holds each run's JSON as a binary: `run` reads that too."""

    body: Raw  # (MessagePack of the run, or of its JSON as a binary)

    @property
    def run(self) -> dict[str, Any]:
        run = _decode_msgpack(self.body)
        if type(run) is bytes:  # (an earlier snapshot form: the run's JSON)
            run = _decode_json(run)
        if type(run) is not dict:
            raise msgspec.ValidationError(f"run {self.run_id!r} is stored as {type(run).__name__}, not an object")
        return run

    @classmethod
    def of(cls, entry: RunEntry) -> SnapshotRunEntry:
        """`entry` as a snapshot keeps it (its JSON re-encoded as MessagePack, once, when the
        snapshot is written; a run MessagePack cannot hold — an integer past 64 bits — keeps
        its JSON)."""
        if type(entry) is cls:
            return entry
        try:
            body = Raw(_encode_msgpack(_decode_json(entry.body)))
        except (msgspec.DecodeError, OverflowError, TypeError):
            body = Raw(_encode_msgpack(bytes(entry.body)))
        return cls(entry.run_id, body, entry.agent_id, entry.team_id, entry.workflow_id, entry.at,
                   entry.event_id, entry.version)


class MessageEntry(msgspec.Struct, kw_only=True):
    role: str
    content: Any = None
    name: str | None = None
    run_id: str | None = None
    message_id: str | None = None
    agent_id: str | None = None
    at: int = 0
    event_id: str = ""


class Conversation(msgspec.Struct, kw_only=True, gc=False):
    """A session's runs and messages.

    The runs live in one dict, run id -> entry, in run order: recording a run again replaces
    it in place, a new run goes last, a deleted one leaves a gap that closes — the order a
    list plus an index would keep, in one structure. It is also what keeps a long history
    out of the cyclic GC: a dict whose keys and values are never tracked (str keys,
    `gc=False` entries) is itself untracked, while a list is always tracked and every full
    collection would touch each of its million entries (two such collections were ~8 % of a
    rebuild). The conversation itself is `gc=False` too, for the reason `SessionRow` gives."""

    session_id: str
    entries: dict[str, RunEntry] = {}  # run id -> run, in run order
    messages: list[MessageEntry] = []
    rewrites: int = 0  # runs replaced or deleted so far (0: runs have only been added)

    @property
    def runs(self) -> list[RunEntry]:
        """The runs in order (a new list on every read)."""
        return list(self.entries.values())

    def get(self, run_id: str) -> RunEntry | None:
        return self.entries.get(run_id)

    def run_index(self, run_id: str) -> int:
        """The run's place in `runs` (-1: not there). A scan: use `get` to find a run."""
        if run_id not in self.entries:
            return -1
        for i, key in enumerate(self.entries):
            if key == run_id:
                return i
        return -1  # pragma: no cover  (it was there)

    def last_runs(self, n: int | None) -> list[RunEntry]:
        if n is None:
            return self.runs
        if n <= 0:
            return []
        values = self.entries.values()
        if n >= len(values):
            return list(values)
        return list(itertools.islice(reversed(values), n))[::-1]


class SnapshotConversation(Conversation, gc=False):
    """A conversation as its snapshot is decoded: its runs are `SnapshotRunEntry`s. Runs
    folded on top of it are plain `RunEntry`s in the same dict; either reads the same."""

    entries: dict[str, SnapshotRunEntry] = {}  # type: ignore[assignment]

    @classmethod
    def of(cls, conv: Conversation) -> SnapshotConversation:
        """`conv` with every run in the snapshot's form (what a snapshot encodes)."""
        to_snapshot = SnapshotRunEntry.of
        return cls(session_id=conv.session_id, entries={k: to_snapshot(e) for k, e in conv.entries.items()},
                   messages=conv.messages, rewrites=conv.rewrites)


class ConversationState(msgspec.Struct):
    sessions: dict[str, Conversation] = {}


class ConversationProjection(Projection[ConversationState]):
    name = "conversation"
    schema = 6  # 4: runs kept as JSON bytes (RunEntry.body); 5: RunEntry ids are the actor's;
    # 6: runs in one dict (Conversation.entries), RunEntry.at
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
            if conv_or_none is not None and conv_or_none.entries.pop(p.run_id, None) is not None:
                conv_or_none.rewrites += 1
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
        last_sid = None
        conv = None
        entries: dict[str, RunEntry] = {}
        agent: str | None = None
        lazy_run = LazyRunRecorded
        for event in events:
            p = event.payload
            if type(p) is lazy_run:  # a rebuild's run: its stored JSON already (eventlog.lazy_runs)
                body = bytes(p.run)
            elif isinstance(p, RunRecorded):
                run = p.run
                body = bytes(run) if isinstance(run, Raw) else encode(run)
            else:
                if isinstance(p, _OTHERS_HANDLED):
                    current = apply(current, event)
                    last_sid = None  # (it may have deleted the session)
                continue
            sid = p.session_id
            if sid != last_sid or conv is None:
                conv = sessions.get(sid)
                if conv is None:
                    conv = _conversation(current, sid)
                entries = conv.entries
                last_sid = sid
            a = event.actor
            if a.agent_id != agent:  # one string per stretch of one agent, not one per run
                agent = a.agent_id
            run_id = p.run_id
            entry = RunEntry(run_id, body, agent, a.team_id, a.workflow_id, event.at, event.id, event.version)
            if run_id in entries:
                conv.rewrites += 1
            entries[run_id] = entry
        return current


_OTHERS_HANDLED = (MessageAppended, RunDeleted, SessionDeleted)


def _record_run(state: ConversationState, event: Event, p: RunRecorded) -> None:
    conv = _conversation(state, p.session_id)
    a = event.actor
    entry = RunEntry(
        run_id=p.run_id,
        body=bytes(p.run) if isinstance(p.run, Raw) else _encode_run(p.run),
        agent_id=a.agent_id,
        team_id=a.team_id,
        workflow_id=a.workflow_id,
        at=event.at,
        event_id=event.id,
        version=event.version,
    )
    entries = conv.entries
    if p.run_id in entries:
        conv.rewrites += 1
    entries[p.run_id] = entry


def _conversation(state: ConversationState, session_id: str) -> Conversation:
    conv = state.sessions.get(session_id)
    if conv is None:
        conv = state.sessions[session_id] = Conversation(session_id=session_id, entries={}, messages=[])
    return conv
