"""`AgentFactory`: agents and teams wired to one shared, persistent memory.

The original design's factory: `create_agent(name=, role=, use_memory=True)` and
`create_team(agents=..., share_memory=True)`. Every agent of a factory shares one EventLogDb,
so a team reads and writes one memory while each event still names the agent that wrote it.
The session id is restored from the log (or created and saved) so a restart carries on.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from agno.agent import Agent
from agno.team import Team

from adapters.agno.model import OfflineModel
from adapters.memory_manager import MemoryManager, get_memory_manager
from eventlog import new_id


class AgentFactory:
    """Creates Agno agents and teams on one memory (see the module docstring)."""

    def __init__(self, memory_manager: MemoryManager | None = None, *, settings: Any = None,
                 model_factory: Any = None, user_id: str | None = None, session_id: str | None = None) -> None:
        self.memory = memory_manager or get_memory_manager(settings)
        self.model_factory = model_factory or (lambda name: OfflineModel(id=f"offline-{name}"))
        self.user_id = user_id or self.memory.user_memory.user_id
        self._session_id = session_id

    @property
    def session_id(self) -> str:
        """The session to run in: given, else restored from the log, else new (and saved)."""
        if self._session_id is None:
            restored = self.memory.load_session_id()
            if restored is None:
                restored = f"eventlog-{datetime.now(timezone.utc):%Y%m%d}-{new_id()[-6:]}"
                self.memory.save_session_id(restored)
            self._session_id = restored
        return self._session_id

    def new_session(self) -> str:
        """Start (and save) a fresh session id."""
        self._session_id = f"eventlog-{datetime.now(timezone.utc):%Y%m%d}-{new_id()[-6:]}"
        self.memory.save_session_id(self._session_id)
        return self._session_id

    def create_agent(self, name: str, role: str | None = None, use_memory: bool = True, **kwargs: Any) -> Agent:
        """An agent whose id is `name`; with `use_memory` it stores sessions, history and user
        memories in the shared log and sees the history of its session on every turn."""
        options: dict[str, Any] = {
            "name": name,
            "id": name,
            "role": role,
            "model": kwargs.pop("model", None) or self.model_factory(name),
            "user_id": self.user_id,
            "session_id": self.session_id,
        }
        if use_memory:
            options.update(db=self.memory.db, add_history_to_context=True, update_memory_on_run=True,
                           add_memories_to_context=True)
        options.update(kwargs)
        return Agent(**options)

    def create_team(self, agents: list[Agent], share_memory: bool = True, name: str = "team",
                    **kwargs: Any) -> Team:
        """A team of `agents`; with `share_memory` the team and every member use one memory."""
        options: dict[str, Any] = {
            "name": name,
            "id": name,
            "members": agents,
            "model": kwargs.pop("model", None) or self.model_factory(name),
            "user_id": self.user_id,
            "session_id": self.session_id,
        }
        if share_memory:
            for agent in agents:
                agent.db = self.memory.db
            options.update(db=self.memory.db, add_history_to_context=True)
        options.update(kwargs)
        return Team(**options)
