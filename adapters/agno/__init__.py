"""Agno integration: `EventLogDb` (Agent/Team/Workflow `db=`), `AsyncEventLogDb` (the same log as
Agno's async db, for `arun` and AgentOS), `OfflineModel` (a deterministic model that needs no
network or key) and `AgentFactory` (agents and teams sharing one memory)."""

from adapters.agno.async_db import AsyncEventLogDb
from adapters.agno.db import EventLogDb
from adapters.agno.model import OfflineModel

__all__ = ["AgentFactory", "AsyncEventLogDb", "EventLogDb", "OfflineModel"]


def __getattr__(name: str) -> object:
    # AgentFactory pulls in the facade; import it on first use to keep `import adapters.agno` light
    if name == "AgentFactory":
        from adapters.agno.factory import AgentFactory

        return AgentFactory
    raise AttributeError(name)
