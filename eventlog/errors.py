"""The error hierarchy of the log, one root so callers can catch everything we raise.

Modelled on PEP 249: an operational failure (the store is unreachable) is a different thing
from a request that can never succeed (bad stream name, oversized event) and from a conflict
the caller can resolve by re-reading (expected version mismatch).
"""

from __future__ import annotations


class EventLogError(Exception):
    """Root of every error this package raises on purpose."""


class InvalidEvent(EventLogError, ValueError):
    """The event or its payload cannot be stored as given (bad field, not JSON, too large)."""


class InvalidStreamName(InvalidEvent):
    """A stream name is empty, too long, has control characters or path tricks."""


class EventTooLarge(InvalidEvent):
    """An encoded event exceeds the store's size limit."""


class ConcurrencyError(EventLogError):
    """`expected_version` did not match the stream's current version; nothing was written."""

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream!r}: expected version {expected}, found {actual}")
        self.stream = stream
        self.expected = expected
        self.actual = actual


class StoreUnavailable(EventLogError, ConnectionError):
    """The backing store cannot be reached (Redis down, disk gone). The outcome of a write
    that raised this is unknown; retrying it is safe because appends are idempotent by id."""


class CorruptLog(EventLogError):
    """Stored data could not be decoded (torn line, hand edit, foreign writer)."""


class InvalidURL(EventLogError, ValueError):
    """`open_store` was given a URL it does not understand."""


class ReadOnlyStore(EventLogError):
    """A write was attempted on a read-only view (for example a time-travel view)."""


class StoreRefused(StoreUnavailable):
    """The store answered but refused the write (Redis out of memory under `noeviction`, a
    read-only replica, a failing disk): nothing was written. A `StoreUnavailable`, so a
    fallback store takes the write instead, and retrying later is safe."""


class LogLost(EventLogError):
    """The store no longer holds events it acknowledged: a Redis restarted without
    persistence, flushed, or whose keys were evicted. Nothing is written and nothing is read
    as if it were complete; the message names what is missing. Recover from a backup (AOF /
    RDB) or an export (`eventlog import`, then `eventlog sync`): see docs/operations.md."""


class LogDiverged(LogLost):
    """The store holds a different log than the one written to so far (Redis replaced, or
    restored from another log's backup): appending would mix two histories."""
