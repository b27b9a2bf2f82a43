"""Agno integration: `EventLogDb` (Agent/Team/Workflow `db=`), `OfflineModel` (a deterministic
model that needs no network or key) and `AgentFactory` (agents and teams sharing one memory)."""

from adapters.agno.db import EventLogDb
from adapters.agno.model import OfflineModel

__all__ = ["EventLogDb", "OfflineModel"]
