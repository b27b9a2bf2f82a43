"""Places in the log: a stream's head (version and hash) and a cursor over the partitions.

Apart from the port (`eventlog.store`) so that what only needs to name a place — the
integrity walk, the file index — does not import the port, and the port can import them.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import msgspec

from eventlog.errors import InvalidEvent
from eventlog.events import Event


class StreamHead(NamedTuple):
    """The last version of a stream and the hash of its last event ("" when empty)."""

    version: int
    hash: str


EMPTY_HEAD = StreamHead(0, "")


class Cursor(msgspec.Struct, frozen=True):
    """A place in the whole log: for each partition, the last position consumed.

    Single-partition stores (memory, file, single Redis) use partition 0 only, so a plain int
    position converts to and from a cursor losslessly. Text form: "12" or "0:12,1:7".
    """

    offsets: dict[int, int] = {}

    @classmethod
    def of(cls, value: Cursor | int | str | None) -> Cursor:
        if value is None:
            return cls()
        if isinstance(value, Cursor):
            return value
        if isinstance(value, bool):
            raise InvalidEvent("a position is an int, a cursor or its text form, not a bool")
        if isinstance(value, int):
            if value < 0:
                raise InvalidEvent(f"position must be >= 0, got {value}")
            return cls({0: value})
        if isinstance(value, str):
            text = value.strip()
            try:
                if ":" not in text:
                    return cls.of(int(text))
                parts = dict(item.split(":", 1) for item in text.split(","))
                return cls({int(k): int(v) for k, v in parts.items()})
            except ValueError as exc:
                raise InvalidEvent(f"not a position: {value!r} (use N or P:N,P:N)") from exc
        raise InvalidEvent(f"not a position: {value!r}")

    def get(self, partition: int) -> int:
        return self.offsets.get(partition, 0)

    def covers(self, event: Event) -> bool:
        """True when `event` is at or before this cursor."""
        return event.position <= self.offsets.get(event.partition, 0)

    def advanced(self, event: Event) -> Cursor:
        offsets = dict(self.offsets)
        if event.position > offsets.get(event.partition, 0):
            offsets[event.partition] = event.position
        return Cursor(offsets)

    def __str__(self) -> str:
        if set(self.offsets) <= {0}:
            return str(self.offsets.get(0, 0))
        return ",".join(f"{p}:{n}" for p, n in sorted(self.offsets.items()))


Until = Cursor | int | str | datetime | None
