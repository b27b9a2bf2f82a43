"""The event: an immutable envelope (who, when, where in the log) around a typed payload.

Payloads are a tagged union of msgspec Structs; the tag (`type`) names what happened. A
payload whose tag this version does not know is read as `UnknownPayload`, which keeps the
original JSON bytes so the event is written back exactly as it was read (never dropped).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, ClassVar, Union

import msgspec

from eventlog.ids import new_id

JSON = Any  # a JSON-compatible value; msgspec validates it at encode time

# The structs below are `gc=False`: the cyclic garbage collector does not track them. An event
# is frozen and holds only JSON data, so it cannot be part of a reference cycle (unless code
# stores an event inside its own payload dict, which nothing does), and a replay or a long
# session read creates hundreds of thousands of them: tracked, they trigger collections that
# scan every live object of the process (measured: ~40 % of reading a 1,000-run session).


class Actor(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Who caused an event: the agent, team, workflow, user, session and run it came from."""

    agent_id: str | None = None
    team_id: str | None = None
    workflow_id: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    run_id: str | None = None


NO_ACTOR = Actor()


class Payload(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type", gc=False):
    """Base of every payload type. `schema` is the shape version of this payload type."""

    schema: ClassVar[int] = 1


# --- sessions -------------------------------------------------------------------------------


class SessionStarted(Payload, frozen=True, tag="session.started"):
    """A session row was created (Agno session: agent, team or workflow)."""

    session_id: str
    session_type: str = "agent"
    agent_id: str | None = None
    team_id: str | None = None
    workflow_id: str | None = None
    user_id: str | None = None
    name: str | None = None
    fields: dict[str, JSON] = {}
    created_at: int | None = None


class SessionRenamed(Payload, frozen=True, tag="session.renamed"):
    session_id: str
    name: str


class SessionDeleted(Payload, frozen=True, tag="session.deleted"):
    session_id: str


class SessionStateChanged(Payload, frozen=True, tag="session.state_changed"):
    """Only the keys that changed: `set` holds new values, `removed` the keys dropped."""

    session_id: str
    set: dict[str, JSON] = {}
    removed: list[str] = []


class SessionSummaryChanged(Payload, frozen=True, tag="session.summary_changed"):
    session_id: str
    summary: JSON = None


class SessionFieldsChanged(Payload, frozen=True, tag="session.fields_changed"):
    """Other top-level session columns that changed (metadata, agent_data, ...), new values."""

    session_id: str
    fields: dict[str, JSON] = {}


class SessionForked(Payload, frozen=True, tag="session.forked"):
    """This session was created as a copy of `origin_session_id` up to `origin_version`."""

    session_id: str
    origin_session_id: str
    origin_stream: str
    origin_version: int
    origin_event_id: str | None = None


class RunRecorded(Payload, frozen=True, tag="run.recorded"):
    """A run (one agent/team/workflow turn) was recorded or updated; `run` is Agno's dict."""

    session_id: str
    run_id: str
    run: dict[str, JSON] = {}


class RunDeleted(Payload, frozen=True, tag="run.deleted"):
    session_id: str
    run_id: str


class MessageAppended(Payload, frozen=True, tag="message.appended"):
    """A conversation message outside of Agno's run objects (the facade's conversation log)."""

    session_id: str
    role: str
    content: JSON = None
    message_id: str | None = None
    run_id: str | None = None
    name: str | None = None


class SessionIdSaved(Payload, frozen=True, tag="session_id.saved"):
    """The facade's `save_session_id`: which session to resume under `key`."""

    session_id: str
    key: str = "default"


# --- user memories --------------------------------------------------------------------------


class UserMemoryAdded(Payload, frozen=True, tag="memory.added"):
    memory_id: str
    user_id: str | None = None
    memory: JSON = None
    topics: list[str] = []
    input: str | None = None
    fields: dict[str, JSON] = {}


class UserMemoryUpdated(Payload, frozen=True, tag="memory.updated"):
    memory_id: str
    user_id: str | None = None
    memory: JSON = None
    old_memory: JSON = None
    topics: list[str] = []
    input: str | None = None
    fields: dict[str, JSON] = {}


class UserMemoryDeleted(Payload, frozen=True, tag="memory.deleted"):
    memory_id: str
    user_id: str | None = None


class UserMemoriesCleared(Payload, frozen=True, tag="memory.cleared"):
    """All memories of `user_id` (or of everyone when None) were removed."""

    user_id: str | None = None


# --- workflows ------------------------------------------------------------------------------


class WorkflowStateSaved(Payload, frozen=True, tag="workflow.state_saved"):
    workflow: str
    session_id: str | None = None
    state: dict[str, JSON] = {}


class WorkflowStepCompleted(Payload, frozen=True, tag="workflow.step_completed"):
    workflow: str
    step: int
    session_id: str | None = None
    name: str | None = None
    output: JSON = None
    total: int | None = None


# --- everything else Agno stores ------------------------------------------------------------


class RecordUpserted(Payload, frozen=True, tag="record.upserted"):
    """A row of one of Agno's other tables (metrics, knowledge, evals, traces, ...)."""

    table: str
    key: str
    record: dict[str, JSON] = {}


class RecordDeleted(Payload, frozen=True, tag="record.deleted"):
    table: str
    key: str


# --- integrity and erasure ------------------------------------------------------------------


class ChainCheckpoint(Payload, frozen=True, tag="log.checkpoint"):
    """The chain heads of every stream at a point, so verification can resume from here."""

    up_to: str  # the cursor (text form) this checkpoint covers
    events: int = 0
    heads: dict[str, str] = {}  # stream -> "<version>:<hash>"
    root: str = ""  # SHA-256 over the sorted heads: print it, compare a copy against it later


class UserForgotten(Payload, frozen=True, tag="user.forgotten"):
    """The user's encryption key was destroyed; their encrypted fields are unreadable."""

    user_id: str
    reason: str | None = None


class UnknownPayload(Payload, frozen=True, tag="unknown.kept"):
    """A payload type this version does not know, kept as its original JSON bytes.

    The codec writes `raw` back verbatim, so a newer writer's event survives a round trip
    through an older reader byte for byte (and its hash still verifies).
    """

    kind: str
    raw: bytes


KNOWN_PAYLOADS: tuple[type[Payload], ...] = (
    SessionStarted,
    SessionRenamed,
    SessionDeleted,
    SessionStateChanged,
    SessionSummaryChanged,
    SessionFieldsChanged,
    SessionForked,
    RunRecorded,
    RunDeleted,
    MessageAppended,
    SessionIdSaved,
    UserMemoryAdded,
    UserMemoryUpdated,
    UserMemoryDeleted,
    UserMemoriesCleared,
    WorkflowStateSaved,
    WorkflowStepCompleted,
    RecordUpserted,
    RecordDeleted,
    ChainCheckpoint,
    UserForgotten,
    UnknownPayload,
)

AnyPayload = Union[  # noqa: UP007 - msgspec needs a real Union object at runtime
    SessionStarted,
    SessionRenamed,
    SessionDeleted,
    SessionStateChanged,
    SessionSummaryChanged,
    SessionFieldsChanged,
    SessionForked,
    RunRecorded,
    RunDeleted,
    MessageAppended,
    SessionIdSaved,
    UserMemoryAdded,
    UserMemoryUpdated,
    UserMemoryDeleted,
    UserMemoriesCleared,
    WorkflowStateSaved,
    WorkflowStepCompleted,
    RecordUpserted,
    RecordDeleted,
    ChainCheckpoint,
    UserForgotten,
    UnknownPayload,
]

PAYLOAD_TYPES: dict[str, type[Payload]] = {
    str(msgspec.inspect.type_info(cls).tag): cls  # type: ignore[attr-defined]
    for cls in KNOWN_PAYLOADS
}


def payload_type(payload: Payload) -> str:
    """The tag of a payload, known or not."""
    tag = TYPE_OF.get(type(payload))
    if tag is None or tag == "unknown.kept":
        return payload.kind if isinstance(payload, UnknownPayload) else str(tag)
    return tag


TYPE_OF: dict[type[Payload], str] = {cls: tag for tag, cls in PAYLOAD_TYPES.items()}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """One immutable fact in the log.

    `id` is the idempotency key. `stream`, `version`, `position`, `prev_hash` and `hash` are
    assigned by the store at append; an event built by a caller leaves them at their defaults.
    `position` is the order in the whole log (per partition on a partitioned Redis store).
    """

    id: str = msgspec.field(default_factory=new_id)
    stream: str = ""
    version: int = 0
    position: int = 0
    partition: int = 0
    at: datetime = msgspec.field(default_factory=utcnow)
    actor: Actor = NO_ACTOR
    causation_id: str | None = None
    correlation_id: str | None = None
    schema: int = 1
    payload: AnyPayload
    prev_hash: str = ""
    hash: str = ""

    @property
    def type(self) -> str:
        return payload_type(self.payload)


def new_event(
    payload: Payload,
    *,
    actor: Actor | None = None,
    id: str | None = None,
    at: datetime | None = None,
    causation_id: str | None = None,
    correlation_id: str | None = None,
) -> Event:
    """An event ready to append: id and time filled in, schema taken from the payload type."""
    return Event(
        payload=payload,  # type: ignore[arg-type]  # any Payload subclass is in the union
        id=id or new_id(),
        at=at or utcnow(),
        actor=actor or NO_ACTOR,
        causation_id=causation_id,
        correlation_id=correlation_id,
        schema=type(payload).schema,
    )
