"""The file store's index: where each stream's events are, and where each position starts.

Kept in memory as compact arrays (8 bytes of location + 4 of length per event), saved to
`index.msgpack` on close and on segment roll, and loaded at open so reopening a large log
only scans what was appended after the last save.
"""

from __future__ import annotations

import os
from array import array
from pathlib import Path

import msgspec

from eventlog.positions import EMPTY_HEAD, StreamHead

INDEX_FORMAT = 1
SPARSE_EVERY = 1024  # one position -> location entry per this many events
RECENT = 4096  # exact locations kept for the newest positions
MISSING = (1 << 64) - 1  # the slot of a version whose line is unreadable
_SEG_SHIFT = 40  # location = segment number << 40 | byte offset


def pack(segment: int, offset: int) -> int:
    return segment << _SEG_SHIFT | offset


def unpack(location: int) -> tuple[int, int]:
    return location >> _SEG_SHIFT, location & ((1 << _SEG_SHIFT) - 1)


class _Saved(msgspec.Struct):
    format: int
    end_segment: int
    end_offset: int
    count: int
    last_location: int
    streams: dict[str, tuple[bytes, bytes]]
    heads: dict[str, tuple[int, str]]
    sparse: bytes


class StreamIndex:
    """Locations of events by stream and version, stream heads, and a sparse position index."""

    def __init__(self) -> None:
        self.locations: dict[str, array[int]] = {}
        self.lengths: dict[str, array[int]] = {}
        self.heads: dict[str, StreamHead] = {}
        self.sparse: array[int] = array("Q")  # location of position k*SPARSE_EVERY + 1
        self.count = 0  # highest position indexed
        self.end_segment = 1
        self.end_offset = 0  # bytes of end_segment already indexed
        self.last_location = -1  # location of the line holding position `count`
        # exact locations of the latest positions: a reader catching up on the last few
        # events seeks straight to them instead of scanning from the last sparse entry. A ring
        # (slot = position % RECENT) keeps the cost of an append to two array stores.
        self.recent_positions: array[int] = array("Q", bytes(8 * RECENT))
        self.recent_locations: array[int] = array("Q", bytes(8 * RECENT))

    def add(self, stream: str, version: int, position: int, digest: str, segment: int, offset: int,
            length: int) -> None:
        location = segment << _SEG_SHIFT | offset
        locs = self.locations.get(stream)
        if locs is None:
            locs = self.locations[stream] = array("Q")
            self.lengths[stream] = array("I")
        have = len(locs)
        if version > have:
            lengths = self.lengths[stream]
            while have < version - 1:  # a version lost to a corrupt line: keep the slot
                locs.append(MISSING)
                lengths.append(0)
                have += 1
            locs.append(location)
            lengths.append(length)
            self.heads[stream] = StreamHead(version, digest)
        if position > self.count:
            sparse = self.sparse
            while len(sparse) <= (position - 1) // SPARSE_EVERY:
                sparse.append(location)
            self.count = position
            self.last_location = location
            slot = position % RECENT
            self.recent_positions[slot] = position
            self.recent_locations[slot] = location

    def head(self, stream: str) -> StreamHead:
        return self.heads.get(stream, EMPTY_HEAD)

    def start_of(self, after: int) -> tuple[int, int]:
        """A location at or before the line of position `after + 1`."""
        slot = (after + 1) % RECENT
        if self.recent_positions[slot] == after + 1:
            return unpack(self.recent_locations[slot])
        k = after // SPARSE_EVERY
        if k < len(self.sparse):
            return unpack(self.sparse[k])
        if self.sparse:
            return unpack(self.sparse[-1])
        return 1, 0

    def save(self, path: Path) -> None:
        saved = _Saved(
            format=INDEX_FORMAT,
            end_segment=self.end_segment,
            end_offset=self.end_offset,
            count=self.count,
            last_location=self.last_location,
            streams={s: (self.locations[s].tobytes(), self.lengths[s].tobytes()) for s in self.locations},
            heads={s: (h.version, h.hash) for s, h in self.heads.items()},
            sparse=self.sparse.tobytes(),
        )
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(msgspec.msgpack.encode(saved))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> StreamIndex | None:
        """The saved index, or None when it is missing or unreadable (then rebuild)."""
        try:
            saved = msgspec.msgpack.decode(path.read_bytes(), type=_Saved)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return None
        if saved.format != INDEX_FORMAT:
            return None
        index = cls()
        index.end_segment, index.end_offset = saved.end_segment, saved.end_offset
        index.count, index.last_location = saved.count, saved.last_location
        for stream, (locs, lens) in saved.streams.items():
            index.locations[stream] = array("Q", locs)
            index.lengths[stream] = array("I", lens)
        index.heads = {s: StreamHead(v, h) for s, (v, h) in saved.heads.items()}
        index.sparse = array("Q", saved.sparse)
        return index
