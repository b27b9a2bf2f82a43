"""`eventlog demo`: the product's main job, end to end, on the embedded file store.

A planner, a coder and a reviewer (Agno agents on OfflineModel, one shared memory) work on a
small task over a few turns; a user fact is remembered; a release workflow gets through three
of its five steps. Then the demo "restarts" — every object dropped, new ones opened on the
same store — resumes the conversation and the workflow from the log, shows who wrote what and
how the state changed across a turn, and prints the commands to explore the same data.
Each run starts a new session, so running it twice is fine.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from adapters.agno.factory import AgentFactory
from adapters.memory_manager import MemoryManager, MemoryPatterns
from eventlog import EventStore, open_store, redact_url
from projections import diff
from projections.audit import audit

TURNS = [
    "We need a small CLI that prints today's weather. Remember that I prefer Python and short functions.",
    "Planner: split the work into steps. Coder: sketch the fetch function.",
    "Reviewer: check the code for error handling.",
]
RELEASE_STEPS = ["write tests", "build package", "tag version", "publish", "announce"]
USER = "demo-user"


@dataclass
class DemoResult:
    """What the demo did, for tests and for `--json`."""

    url: str
    session_id: str
    turns: int
    resumed_history_runs: int
    workflow_resumed_at: int
    workflow_done: bool
    writers: dict[str, dict[str, int]] = field(default_factory=dict)
    changes: list[dict[str, Any]] = field(default_factory=list)
    memories: list[str] = field(default_factory=list)
    verify_ok: bool = False


def _team(memory: MemoryManager, session_id: str) -> tuple[AgentFactory, Any]:
    factory = AgentFactory(memory, user_id=USER, session_id=session_id)
    agents = [
        factory.create_agent(name="planner", role="breaks the task into steps"),
        factory.create_agent(name="coder", role="writes the code"),
        factory.create_agent(name="reviewer", role="reviews the code"),
    ]
    return factory, factory.create_team(agents=agents, share_memory=True, name="dev-team")


def run_demo(url: str | None = None, *, console: Console | None = None) -> DemoResult:
    out = console or Console()
    store: EventStore = open_store(url)
    shown_url = redact_url(store.url)
    memory = MemoryManager(store, user_id=USER)
    session_id = AgentFactory(memory, user_id=USER).new_session()
    out.rule("[bold]1. A team works on a task")
    out.print(f"store: {shown_url}\nsession: {session_id}")
    _, team = _team(memory, session_id)
    turn_marks = []
    for i, text in enumerate(TURNS, start=1):
        turn_marks.append(store.last_position())
        reply = team.run(text, session_id=session_id, user_id=USER)
        out.print(f"[cyan]turn {i}[/] user: {escape(text)}\n        team: {escape(str(reply.content)[:160])}")
    turn_marks.append(store.last_position())
    for step, name in enumerate(RELEASE_STEPS[:3], start=1):
        MemoryPatterns.complete_step(memory, session_id=session_id, workflow="release", step=step, name=name,
                                     total=len(RELEASE_STEPS), agent_id="coder", output=f"{name}: ok")
    MemoryPatterns.save_workflow_state(memory, session_id=session_id, workflow="release",
                                       state={"version": "0.1.0", "steps_done": 3})
    out.print("release workflow: steps 1-3 of 5 done, then the process stops")
    memory.close()  # the "restart": nothing survives but the log

    out.rule("[bold]2. Restart: new objects on the same store")
    store = open_store(url)
    memory = MemoryManager(store, user_id=USER)
    factory = AgentFactory(memory, user_id=USER)
    resumed = factory.session_id
    planner = factory.create_agent(name="planner", role="breaks the task into steps")
    reply = planner.run("Where were we?", session_id=resumed, user_id=USER)
    history = memory.db.get_session(resumed)
    history_runs = len(history.runs or []) if history is not None else 0
    out.print(f"resumed session {resumed} with {history_runs} stored runs\n"
              f"planner: {escape(str(reply.content)[:200])}")
    wf = MemoryPatterns.workflow(memory, session_id=resumed, workflow="release")
    resume_at = wf.next_step if wf is not None else 1
    for step in range(resume_at, len(RELEASE_STEPS) + 1):
        MemoryPatterns.complete_step(memory, session_id=resumed, workflow="release", step=step,
                                     name=RELEASE_STEPS[step - 1], total=len(RELEASE_STEPS), agent_id="reviewer")
    wf = MemoryPatterns.workflow(memory, session_id=resumed, workflow="release")
    out.print(f"release workflow resumed at step {resume_at}: done = {wf is not None and wf.done}")
    memories = [str(m.memory) for m in memory.db.get_user_memories(user_id=USER)]  # type: ignore[union-attr]

    out.rule("[bold]3. Who wrote what (this session)")
    writers: dict[str, Counter[str]] = {}
    for event in audit(store, session_id=resumed):
        who = event.actor.agent_id or event.actor.team_id or "(facade)"
        writers.setdefault(who, Counter())[event.type] += 1
    table = Table("writer", "events", "by type")
    for who, counts in sorted(writers.items()):
        table.add_row(who, str(sum(counts.values())), ", ".join(f"{t} x{n}" for t, n in sorted(counts.items())))
    out.print(table)
    out.print("remembered about the user: " + "; ".join(sorted(set(memories))))

    out.rule("[bold]4. The state before and after turn 2")
    changes = diff(store, turn_marks[1], turn_marks[2], session_id=resumed)
    table = Table("change", "what", "after")
    for change in changes:
        table.add_row(change.kind, change.key, escape(str(change.after)[:80]))
    out.print(table)
    report = store.verify()
    out.print(f"log verifies: {report.ok} ({report.events} events, root {report.root[:16]}...)")

    out.rule("[bold]Explore the same data")
    url_opt = f" --url {shown_url}" if url else ""
    for cmd in (
        f"eventlog{url_opt} sessions --user {USER}",
        f"eventlog{url_opt} replay --session {resumed}",
        f"eventlog{url_opt} audit --session {resumed}",
        f"eventlog{url_opt} memories --user {USER}",
        f"eventlog{url_opt} state --session {resumed} --at {turn_marks[1]}",
        f"eventlog{url_opt} diff --session {resumed} {turn_marks[1]} {turn_marks[2]}",
        f"eventlog{url_opt} verify",
    ):
        out.print(f"  {cmd}")
    result = DemoResult(
        url=shown_url, session_id=resumed, turns=len(TURNS), resumed_history_runs=history_runs,
        workflow_resumed_at=resume_at, workflow_done=bool(wf is not None and wf.done),
        writers={w: dict(c) for w, c in writers.items()},
        changes=[{"kind": c.kind, "key": c.key, "after": c.after} for c in changes],
        memories=sorted(set(memories)), verify_ok=report.ok,
    )
    memory.close()
    return result

