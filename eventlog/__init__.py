"""agno-eventlog's core: typed events, the EventStore port and its backends.

This package knows nothing of projections or Agno. Start with `open_store(url)`.
"""

from typing import TYPE_CHECKING

from eventlog.errors import (
    ConcurrencyError,
    CorruptLog,
    EventLogError,
    EventTooLarge,
    InvalidEvent,
    InvalidStreamName,
    InvalidURL,
    LogDiverged,
    LogLost,
    ReadOnlyStore,
    StoreRefused,
    StoreUnavailable,
)
from eventlog.events import *  # noqa: F403 - the payload types are the public vocabulary
from eventlog.events import KNOWN_PAYLOADS, Actor, Event, new_event
from eventlog.ids import new_id
from eventlog.names import stream_for, validate_stream
from eventlog.store import Cursor, EventStore, StreamHead
from eventlog.stores.memory import MemoryStore

__all__ = [
    "Actor",
    "ConcurrencyError",
    "CorruptLog",
    "Cursor",
    "Event",
    "EventLogError",
    "EventStore",
    "EventTooLarge",
    "InvalidEvent",
    "InvalidStreamName",
    "InvalidURL",
    "LogDiverged",
    "LogLost",
    "MemoryStore",
    "ReadOnlyStore",
    "StoreRefused",
    "StoreUnavailable",
    "StreamHead",
    "new_event",
    "new_id",
    "stream_for",
    "validate_stream",
]

__all__ += [cls.__name__ for cls in KNOWN_PAYLOADS]

from eventlog.open import open_store  # noqa: E402 - after the names it opens
from eventlog.urls import redact_url  # noqa: E402

__all__ += ["open_store", "redact_url"]
__all__ += ["EncryptedStore", "FallbackStore", "JsonlStore", "RedisStreamStore"]

if TYPE_CHECKING:
    from eventlog.stores.encrypted import EncryptedStore
    from eventlog.stores.fallback import FallbackStore
    from eventlog.stores.jsonl import JsonlStore
    from eventlog.stores.redis_store import RedisStreamStore

# The other backends, re-exported lazily: `import eventlog` does not import redis-py.
_LAZY = {
    "JsonlStore": "eventlog.stores.jsonl",
    "RedisStreamStore": "eventlog.stores.redis_store",
    "FallbackStore": "eventlog.stores.fallback",
    "EncryptedStore": "eventlog.stores.encrypted",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'eventlog' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
