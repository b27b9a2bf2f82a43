"""Workflow state: the current state and step history of each workflow in each session.

An interrupted multi-step process resumes at `next_step` with the state it had saved.
"""

from __future__ import annotations

from typing import Any

import msgspec

from eventlog import Event, WorkflowStateSaved, WorkflowStepCompleted
from projections.fold import Projection, epoch


class StepEntry(msgspec.Struct, kw_only=True):
    step: int
    name: str | None = None
    output: Any = None
    at: int = 0
    agent_id: str | None = None
    event_id: str = ""


class WorkflowRow(msgspec.Struct, kw_only=True):
    workflow: str
    session_id: str | None = None
    state: dict[str, Any] = {}
    steps: list[StepEntry] = []
    total: int | None = None
    updated_at: int = 0

    @property
    def last_step(self) -> int:
        return max((s.step for s in self.steps), default=0)

    @property
    def next_step(self) -> int:
        """The step to run next when resuming (1-based)."""
        return self.last_step + 1

    @property
    def done(self) -> bool:
        return self.total is not None and self.last_step >= self.total


class WorkflowsState(msgspec.Struct):
    workflows: dict[str, WorkflowRow] = {}


def workflow_key(workflow: str, session_id: str | None) -> str:
    return f"{workflow}\x1f{session_id or ''}"


class WorkflowsProjection(Projection[WorkflowsState]):
    name = "workflows"
    schema = 1
    state_type = WorkflowsState
    lazy_runs = True  # reads no run bodies
    handles = (WorkflowStateSaved, WorkflowStepCompleted)

    def initial(self) -> WorkflowsState:
        return WorkflowsState({})

    def apply(self, state: WorkflowsState, event: Event) -> WorkflowsState:
        p = event.payload
        if not isinstance(p, (WorkflowStateSaved, WorkflowStepCompleted)):
            return state
        key = workflow_key(p.workflow, p.session_id)
        row = state.workflows.get(key)
        if row is None:
            row = state.workflows[key] = WorkflowRow(workflow=p.workflow, session_id=p.session_id)
        row.updated_at = epoch(event.at)
        if isinstance(p, WorkflowStateSaved):
            row.state = dict(p.state)
        else:
            row.steps = [s for s in row.steps if s.step != p.step]
            row.steps.append(
                StepEntry(step=p.step, name=p.name, output=p.output, at=epoch(event.at),
                          agent_id=event.actor.agent_id, event_id=event.id)
            )
            row.steps.sort(key=lambda s: s.step)
            if p.total is not None:
                row.total = p.total
        return state
