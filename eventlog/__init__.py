"""agno-eventlog's core: typed events, the EventStore port and its backends.

This package knows nothing of projections or Agno. Start with `open_store(url)`.
"""

from eventlog.errors import (
    ConcurrencyError,
    CorruptLog,
    EventLogError,
    EventTooLarge,
    InvalidEvent,
    InvalidStreamName,
    InvalidURL,
    ReadOnlyStore,
    StoreUnavailable,
)
from eventlog.events import *  # noqa: F403 - the payload types are the public vocabulary
from eventlog.events import KNOWN_PAYLOADS, Actor, Event, new_event
from eventlog.ids import new_id
from eventlog.memory import MemoryStore
from eventlog.names import stream_for, validate_stream
from eventlog.store import Cursor, EventStore, StreamHead

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
    "MemoryStore",
    "ReadOnlyStore",
    "StoreUnavailable",
    "StreamHead",
    "new_event",
    "new_id",
    "stream_for",
    "validate_stream",
]

__all__ += [cls.__name__ for cls in KNOWN_PAYLOADS]

from eventlog.open import open_store, redact_url  # noqa: E402 - after the names it opens

__all__ += ["open_store", "redact_url"]
