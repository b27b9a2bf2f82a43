"""The runner: folds the log into live projections and keeps them current.

It catches up from the store (starting from saved snapshots when they fit), can follow the
log from a background thread, and remembers for each projection the cursor it has applied.
Readers take `runner.lock` while they look at a state, so they never see half an event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec

from eventlog import Cursor, Event, EventStore
from projections.fold import Projection

log = logging.getLogger("projections.runner")

SNAPSHOT_PREFIX = "snapshot/"


class Snapshot(msgspec.Struct):
    """A projection's state with the cursor it covers and the schema it was folded with."""

    name: str
    schema: int
    cursor: str
    state: bytes


class ProjectionRunner:
    """Keeps a set of projections folded up to the end of a store's log."""

    def __init__(self, store: EventStore, projections: Sequence[Projection[Any]], *,
                 use_snapshots: bool = True) -> None:
        self.store = store
        self.projections = {p.name: p for p in projections}
        self.states: dict[str, Any] = {p.name: p.initial() for p in projections}
        self.cursors: dict[str, Cursor] = {p.name: Cursor() for p in projections}
        self.lock = threading.RLock()
        self.applied = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._applied_event = threading.Condition(self.lock)
        if use_snapshots:
            self.load_snapshots()

    # --- folding --------------------------------------------------------------------------

    @property
    def cursor(self) -> Cursor:
        """The cursor every projection has reached (the least advanced one)."""
        with self.lock:
            cursors = list(self.cursors.values())
        if not cursors:
            return Cursor()
        partitions = set().union(*(c.offsets for c in cursors))
        return Cursor({p: min(c.get(p) for c in cursors) for p in partitions})

    def apply(self, event: Event) -> None:
        """Apply one event to every projection that has not seen it (idempotent)."""
        with self.lock:
            for name, projection in self.projections.items():
                cursor = self.cursors[name]
                if cursor.covers(event):
                    continue
                self.states[name] = projection.apply(self.states[name], event)
                self.cursors[name] = cursor.advanced(event)
            self.applied += 1
            self._applied_event.notify_all()

    def catch_up(self) -> int:
        """Fold everything appended since the last call; returns how many events were read."""
        n = 0
        with self.lock:  # one catch-up at a time, so events are applied in log order
            for event in self.store.read_all(after=self.cursor):
                self.apply(event)
                n += 1
        return n

    # --- following ------------------------------------------------------------------------

    def start(self) -> ProjectionRunner:
        """Catch up, then follow the log from a daemon thread until `stop()`."""
        self.catch_up()
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._follow, name="projection-runner", daemon=True)
            self._thread.start()
        return self

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                for event in self.store.tail(after=self.cursor, stop=self._stop):
                    self.apply(event)
            except Exception:  # keep following: a transient store error must not kill reads
                log.exception("projection runner: tail failed; retrying")
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def wait_for(self, cursor: Cursor, timeout: float = 5.0) -> bool:
        """Block until every projection has applied events up to `cursor`."""
        with self._applied_event:
            return self._applied_event.wait_for(
                lambda: all(self.cursor.get(p) >= n for p, n in cursor.offsets.items()), timeout
            )

    @contextmanager
    def reading(self, name: str) -> Iterator[Any]:
        """`with runner.reading("sessions") as state:` — the state, consistent while held."""
        with self.lock:
            yield self.states[name]

    @contextmanager
    def reading_all(self) -> Iterator[dict[str, Any]]:
        """Every projection's state by name, consistent while held."""
        with self.lock:
            yield self.states

    # --- snapshots ------------------------------------------------------------------------

    def save_snapshots(self) -> None:
        """Save every projection's state with its cursor beside the log."""
        with self.lock:
            snaps = [
                Snapshot(name=name, schema=p.schema, cursor=str(self.cursors[name]),
                         state=p.encode_state(self.states[name]))
                for name, p in self.projections.items()
            ]
        for snap in snaps:
            self.store.put_blob(SNAPSHOT_PREFIX + snap.name, msgspec.msgpack.encode(snap))

    def load_snapshots(self) -> None:
        """Start each projection from its snapshot, unless the snapshot is missing, unreadable
        or was made by a different schema: then it is discarded and rebuilt from the log."""
        for name, projection in self.projections.items():
            data = self.store.get_blob(SNAPSHOT_PREFIX + name)
            if data is None:
                continue
            try:
                snap = msgspec.msgpack.decode(data, type=Snapshot)
                if snap.schema != projection.schema or snap.name != name:
                    log.info("snapshot %s has schema %s, code has %s: rebuilding", name, snap.schema,
                             projection.schema)
                    continue
                state = projection.decode_state(snap.state)
                cursor = Cursor.of(snap.cursor)
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
                log.warning("snapshot %s is unreadable (%s): rebuilding", name, exc)
                continue
            with self.lock:
                self.states[name] = state
                self.cursors[name] = cursor

    def close(self) -> None:
        self.stop()
