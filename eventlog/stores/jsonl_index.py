"""The file store's index: where each stream's events are, and where each position starts.

Per stream, compact arrays (8 bytes of location + 4 of length per event) and the head; per
log, a sparse position index. Saved to `streams.sqlite3` (one row per stream, plus the log's
end) on close and on segment roll, so reopening a large log only scans what was appended
after the last save — and a stream's arrays are read from there the first time this process
touches the stream, not at open: open time and memory follow the streams a process uses,
not the number of streams in the log. (Logs saved by older versions as `index.msgpack` are
read whole once and saved the new way.)

Saved stream rows are never older than the saved log end: a process that saves has indexed
every line after the end it opened at, so it writes every stream those lines touched. A row
newer than the end it is read with does no harm: `add` skips versions it already has.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from array import array
from pathlib import Path

import msgspec

from eventlog.positions import EMPTY_HEAD, StreamHead

INDEX_FORMAT = 1
SPARSE_EVERY = 1024  # one position -> location entry per this many events
RECENT = 4096  # exact locations kept for the newest positions
MISSING = (1 << 64) - 1  # the slot of a version whose line is unreadable
LOADED_STREAMS = 20_000  # streams kept in memory before clean ones are dropped (read again on use)
_SEG_SHIFT = 40  # location = segment number << 40 | byte offset


def pack(segment: int, offset: int) -> int:
    return segment << _SEG_SHIFT | offset


def unpack(location: int) -> tuple[int, int]:
    return location >> _SEG_SHIFT, location & ((1 << _SEG_SHIFT) - 1)


class _Header(msgspec.Struct):
    format: int
    end_segment: int
    end_offset: int
    count: int
    last_location: int
    sparse: bytes


class SavedStreams:
    """`streams.sqlite3`: the saved log end (one row) and one row per stream."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(
                "CREATE TABLE IF NOT EXISTS header (k INTEGER PRIMARY KEY, v BLOB NOT NULL);"
                "CREATE TABLE IF NOT EXISTS streams (name TEXT PRIMARY KEY, locs BLOB NOT NULL, lens BLOB NOT NULL,"
                " version INTEGER NOT NULL, hash TEXT NOT NULL) WITHOUT ROWID;")
        except sqlite3.DatabaseError:
            self._db.close()
            raise

    def header(self) -> _Header | None:
        with self._lock:
            row = self._db.execute("SELECT v FROM header WHERE k=1").fetchone()
        if row is None:
            return None
        try:
            header = msgspec.msgpack.decode(row[0], type=_Header)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        return header if header.format == INDEX_FORMAT else None

    def stream(self, name: str) -> tuple[bytes, bytes, int, str] | None:
        with self._lock:
            row = self._db.execute("SELECT locs, lens, version, hash FROM streams WHERE name=?", (name,)).fetchone()
        return None if row is None else (row[0], row[1], row[2], row[3])

    def names(self) -> list[str]:
        with self._lock:
            return [n for (n,) in self._db.execute("SELECT name FROM streams")]

    def write(self, rows: list[tuple[str, bytes, bytes, int, str]], header: _Header | None) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO streams VALUES (?, ?, ?, ?, ?)", rows)
                if header is not None:
                    self._db.execute("INSERT OR REPLACE INTO header VALUES (1, ?)", (msgspec.msgpack.encode(header),))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def clear(self) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM streams")
            self._db.execute("DELETE FROM header")
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class StreamIndex:
    """Locations of events by stream and version, stream heads, and a sparse position index.
    Streams are read from `saved` when first touched (see the module docstring)."""

    def __init__(self, saved: SavedStreams | None = None) -> None:
        self.saved = saved
        self.locations: dict[str, array[int]] = {}
        self.lengths: dict[str, array[int]] = {}
        self.heads: dict[str, StreamHead] = {}
        self._dirty: set[str] = set()  # streams changed since they were saved
        self.legacy: Path | None = None  # an `index.msgpack` read at open, removed once saved anew
        self._absent: set[str] = set()  # streams `saved` was asked for and does not have
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

    def _load(self, stream: str) -> bool:
        """Whether the stream exists, reading its saved arrays the first time it is touched."""
        if stream in self.locations:
            return True
        if self.saved is None or stream in self._absent:
            return False
        if len(self.locations) >= LOADED_STREAMS:
            self._drop_clean()
        row = self.saved.stream(stream)
        if row is None:
            self._absent.add(stream)
            return False
        locs, lens, version, digest = row
        self.locations[stream] = array("Q", locs)
        self.lengths[stream] = array("I", lens)
        self.heads[stream] = StreamHead(version, digest)
        return True

    def _drop_clean(self) -> None:
        """Save the changed streams and forget them all (they are read again on use)."""
        if self.saved is None:
            return
        self.saved.write(self._rows(), None)
        self._dirty.clear()
        self.locations.clear()
        self.lengths.clear()
        self.heads.clear()
        self._absent.clear()

    def stream(self, stream: str) -> tuple[array[int], array[int]] | None:
        """The stream's (locations, lengths) by version, or None."""
        if not self._load(stream):
            return None
        return self.locations[stream], self.lengths[stream]

    def stream_names(self) -> list[str]:
        names = dict.fromkeys(self.saved.names()) if self.saved is not None else {}
        names.update(dict.fromkeys(self.locations))
        return list(names)

    def add(self, stream: str, version: int, position: int, digest: str, segment: int, offset: int,
            length: int) -> None:
        location = segment << _SEG_SHIFT | offset
        locs = self.locations.get(stream)
        if locs is None and self._load(stream):
            locs = self.locations[stream]
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
            self._dirty.add(stream)
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
        if not self._load(stream):
            return EMPTY_HEAD
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

    def _rows(self) -> list[tuple[str, bytes, bytes, int, str]]:
        return [(s, self.locations[s].tobytes(), self.lengths[s].tobytes(), self.heads[s].version, self.heads[s].hash)
                for s in self._dirty if s in self.locations]

    def save(self) -> None:
        """Write the changed streams and the log's end (one transaction)."""
        if self.saved is None:
            return
        header = _Header(format=INDEX_FORMAT, end_segment=self.end_segment, end_offset=self.end_offset,
                         count=self.count, last_location=self.last_location, sparse=self.sparse.tobytes())
        self.saved.write(self._rows(), header)
        self._dirty.clear()
        if self.legacy is not None:  # saved the new way: the old file has served its turn
            self.legacy.unlink(missing_ok=True)
            self.legacy = None

    @classmethod
    def open(cls, directory: Path) -> tuple[StreamIndex, bool]:
        """The saved index of a log directory, and whether one was saved (else: scan the log).
        A saved file that cannot be read is moved aside and a new one started."""
        path = directory / "streams.sqlite3"
        try:
            saved = SavedStreams(path)
        except sqlite3.DatabaseError:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)  # a cache: rebuilt by a rescan
            saved = SavedStreams(path)
        index = cls(saved)
        header = saved.header()
        legacy = directory / "index.msgpack"
        if header is None and legacy.exists():
            old = _load_legacy(legacy)
            if old is not None:  # read whole once, saved the new way (the store saves it at open)
                old.saved = saved
                old._dirty = set(old.locations)
                old.legacy = legacy
                return old, True
        if header is None:
            saved.clear()
            return index, False
        index.end_segment, index.end_offset = header.end_segment, header.end_offset
        index.count, index.last_location = header.count, header.last_location
        index.sparse = array("Q", header.sparse)
        return index, True

    def reset(self) -> StreamIndex:
        """A fresh index over the same saved file, emptied (the files no longer match it)."""
        if self.saved is not None:
            self.saved.clear()
        return StreamIndex(self.saved)

    def close(self) -> None:
        if self.saved is not None:
            self.saved.close()


class _Saved(msgspec.Struct):
    """The whole index as older versions saved it (`index.msgpack`)."""

    format: int
    end_segment: int
    end_offset: int
    count: int
    last_location: int
    streams: dict[str, tuple[bytes, bytes]]
    heads: dict[str, tuple[int, str]]
    sparse: bytes


def _load_legacy(path: Path) -> StreamIndex | None:
    try:
        saved = msgspec.msgpack.decode(path.read_bytes(), type=_Saved)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    if saved.format != INDEX_FORMAT:
        return None
    index = StreamIndex()
    index.end_segment, index.end_offset = saved.end_segment, saved.end_offset
    index.count, index.last_location = saved.count, saved.last_location
    for stream, (locs, lens) in saved.streams.items():
        index.locations[stream] = array("Q", locs)
        index.lengths[stream] = array("I", lens)
    index.heads = {s: StreamHead(v, h) for s, (v, h) in saved.heads.items()}
    index.sparse = array("Q", saved.sparse)
    return index
