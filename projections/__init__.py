"""Read models folded from the event log: sessions, conversations, user memories, workflows,
audit; the runner that keeps them current; snapshots and time travel.

Imports `eventlog`, never `adapters` or Agno.
"""

from projections.audit import ActorsProjection, audit
from projections.conversation import Conversation, ConversationProjection, ConversationState
from projections.fold import Projection
from projections.memories import (
    MemoriesState,
    MemoryRow,
    UserMemoriesProjection,
    memory_stats,
    memory_topics,
    query_memories,
)
from projections.records import RecordsProjection, RecordsState
from projections.runner import ProjectionRunner
from projections.sessions import SessionRow, SessionsProjection, SessionsState, query_sessions
from projections.timetravel import (
    Change,
    Point,
    PointNotFound,
    diff,
    fork_session,
    models_at,
    parse_point,
    session_at,
    state_at,
)
from projections.workflows import WorkflowRow, WorkflowsProjection, WorkflowsState, workflow_key


def all_projections() -> list[Projection]:  # type: ignore[type-arg]
    """A fresh instance of every read model, for a runner that serves them all."""
    return [SessionsProjection(), ConversationProjection(), UserMemoriesProjection(),
            WorkflowsProjection(), ActorsProjection(), RecordsProjection()]


__all__ = [
    "ActorsProjection",
    "Change",
    "Conversation",
    "ConversationProjection",
    "ConversationState",
    "MemoriesState",
    "MemoryRow",
    "Point",
    "PointNotFound",
    "Projection",
    "ProjectionRunner",
    "RecordsProjection",
    "RecordsState",
    "SessionRow",
    "SessionsProjection",
    "SessionsState",
    "UserMemoriesProjection",
    "WorkflowRow",
    "WorkflowsProjection",
    "WorkflowsState",
    "all_projections",
    "audit",
    "diff",
    "fork_session",
    "memory_stats",
    "memory_topics",
    "models_at",
    "parse_point",
    "query_memories",
    "query_sessions",
    "session_at",
    "state_at",
    "workflow_key",
]
