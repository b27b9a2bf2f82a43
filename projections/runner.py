"""The runner: folds the log into live projections and keeps them current.

It catches up from the store (starting from saved snapshots when they fit), can follow the
log from a background thread, and remembers for each projection the cursor it has applied.
Readers take `runner.lock` while they look at a state, so they never see half an event.
"""

from __future__ import annotations

import logging
import operator
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

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


class _Routes(NamedTuple):
    """For one mix of payload types in a batch: each routed projection's share of the types
    (only those with one), and all the types any of them takes."""

    shares: dict[str, frozenset[type]]
    taken: frozenset[type]


_payload_of = operator.attrgetter("payload")
_partition_of = operator.attrgetter("partition")


class ProjectionRunner:
    """Keeps a set of projections folded up to the end of a store's log."""

    def __init__(self, store: EventStore, projections: Sequence[Projection[Any]], *,
                 use_snapshots: bool = True) -> None:
        self.store = store
        self.projections = {p.name: p for p in projections}
        self.states: dict[str, Any] = {p.name: p.initial() for p in projections}
        # per projection: partition -> last position applied
        self._offsets: dict[str, dict[int, int]] = {p.name: {} for p in projections}
        self.lock = threading.RLock()
        self.applied = 0
        self._provisional_ids: set[str] = set()  # see `_screen`
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._applied_event = threading.Condition(self.lock)
        if use_snapshots:
            self.load_snapshots()

    # --- folding --------------------------------------------------------------------------

    @property
    def cursors(self) -> dict[str, Cursor]:
        """Each projection's cursor (the last event it has applied)."""
        with self.lock:
            return {name: Cursor(dict(offsets)) for name, offsets in self._offsets.items()}

    @property
    def cursor(self) -> Cursor:
        """The cursor every projection has reached (the least advanced one)."""
        with self.lock:
            offsets = list(self._offsets.values())
        if not offsets:
            return Cursor()
        partitions = set().union(*offsets)
        return Cursor({p: min(o.get(p, 0) for o in offsets) for p in partitions})

    def seed(self, states: dict[str, Any], cursor: Cursor) -> None:
        """Start from `states` (those named; the others as they are) taken to be the fold up to
        `cursor`, for every projection: the next catch-up reads only what comes after it. For
        a warm start from state held elsewhere (see `projections.index.fallback_reads`)."""
        with self.lock:
            self.states.update({name: state for name, state in states.items() if name in self.projections})
            for offsets in self._offsets.values():
                offsets.clear()
                offsets.update(cursor.offsets)

    def apply(self, event: Event) -> None:
        """Apply one event to every projection that has not seen it (idempotent)."""
        with self.lock:
            provisional = event.partition >= self.store.partitions or bool(self._provisional_ids)
            self._apply(event)
            if provisional:
                self._settle_provisional()
            self._applied_event.notify_all()

    def _apply(self, event: Event) -> None:
        partition, position = event.partition, event.position
        if (self._provisional_ids or partition >= self.store.partitions) and self._folded_by_id(event):
            return
        states = self.states
        for name, projection in self.projections.items():
            offsets = self._offsets[name]
            if position <= offsets.get(partition, 0):
                continue  # this projection has it already (live thread and catch-up overlap)
            states[name] = projection.apply(states[name], event)
            offsets[partition] = position
        self.applied += 1

    def catch_up(self) -> int:
        """Fold everything appended since the last call; returns how many events were read."""
        with self.lock:  # one catch-up at a time, so events are applied in log order
            n = 0
            try:
                offsets = list(self._offsets.values())
                if offsets and all(o == offsets[0] for o in offsets[1:]):
                    n = self._catch_up_aligned()
                else:
                    for event in self.store.read_all(after=self.cursor):
                        self._apply(event)
                        n += 1
                self._settle_provisional()
            finally:
                self._applied_event.notify_all()  # (also after a failure: waiters re-check)
        return n

    # --- provisional events (a fallback store's pending ones) -------------------------------
    #
    # A fallback store hands out events not yet in Redis under a partition Redis does not
    # have (`PENDING_PARTITION`, numbered in the file). Once synced they come again, from
    # Redis, renumbered. The runner remembers the ids it folded as pending and passes over
    # their Redis copies (advancing the cursor), so each event is folded once; when none is
    # outstanding, the pending partition leaves the cursor again (and snapshots, never taken
    # of a provisional cursor, resume).

    def _folded_by_id(self, event: Event) -> bool:
        """For `_apply`: whether `event` was folded already under another number (then only
        the cursors move). Events every projection has passed are left to `_apply`'s check."""
        partition, position = event.partition, event.position
        if all(position <= offsets.get(partition, 0) for offsets in self._offsets.values()):
            return False
        if self._screen([event], read_earlier=True):
            return False
        for offsets in self._offsets.values():
            offsets[partition] = max(offsets.get(partition, 0), position)
        return True

    def _screen(self, events: list[Event], *, read_earlier: bool = False) -> list[Event]:
        """`events` without the Redis copies of events already folded as pending; records
        the pending ones about to be folded. (Only called when either can occur.)
        `read_earlier`: the events were read a while ago (the follower's tail), so a pending
        one may have reached Redis since and been folded from there: the store is asked."""
        parts = self.store.partitions
        outstanding = self._provisional_ids
        held_by_primary = getattr(self.store, "held_by_primary", None)
        pending = [e for e in events if e.partition >= parts]
        stale = held_by_primary(pending) if read_earlier and pending and held_by_primary is not None else set()
        kept = []
        for event in events:
            if event.partition >= parts:
                if event.id in stale:
                    continue
                outstanding.add(event.id)
            elif event.id in outstanding:
                outstanding.discard(event.id)
                continue
            kept.append(event)
        return kept

    def _settle_provisional(self) -> None:
        if self._provisional_ids:
            return
        parts = self.store.partitions
        for name, offsets in self._offsets.items():
            if any(p >= parts for p in offsets):
                self._offsets[name] = {p: v for p, v in offsets.items() if p < parts}

    def _catch_up_aligned(self) -> int:
        """The common case — every projection at the same cursor — folded batch by batch.

        The store hands the log over in batches (`read_batches_for_fold`: as it decodes them,
        with runs left as their JSON when every projection can take that), and each
        projection folds a whole batch with `Projection.fold`, which a projection may write
        as one tight loop. A projection with its own `fold` (or one that handles every type)
        gets every event and passes over what it does not handle; one that only has `apply`
        gets just the events of the types it handles. Projections are independent folds, so
        folding a batch projection by projection gives the states that applying it event
        by event would. The cursor moves after each batch.

        A read that fails part way leaves the batches folded so far, with their cursor. A
        fold that fails part way leaves states that no cursor describes (the projections
        before it have the batch, the rest not), so every read model is reset to its
        initial state and the next catch-up folds the log again."""
        states = self.states
        projections = self.projections
        reached = dict(next(iter(self._offsets.values())))
        whole = [(name, p.fold) for name, p in projections.items()
                 if p.handles is None or type(p).fold is not Projection.fold]
        whole_names = {name for name, _ in whole}
        routed = {name: p for name, p in projections.items() if name not in whole_names}
        routes: dict[frozenset[type], _Routes] = {}
        lazy = all(p.takes_lazy_runs() for p in projections.values())
        n = 0
        try:
            parts = self.store.partitions
            for batch in self.store.read_batches_for_fold(Cursor(dict(reached)), lazy_runs=lazy):
                if not batch:
                    continue
                last = batch[-1]
                if batch[0].partition == last.partition and len(set(map(_partition_of, batch))) == 1:
                    reached[last.partition] = last.position  # (positions rise within a partition)
                else:  # a batch may span partitions (a fallback's pending ones, a merged log)
                    for event in batch:
                        reached[event.partition] = event.position
                n += len(batch)
                if self._provisional_ids or batch[-1].partition >= parts:  # (pending ones come last)
                    batch = self._screen(batch)
                try:
                    for name, fold in whole:
                        states[name] = fold(batch, states[name])
                    if routed:
                        self._fold_routed(batch, routed, routes)
                except BaseException:
                    log.error("projection runner: a fold failed part way; read models reset, the next "
                              "catch-up folds the log again")
                    self._reset()
                    reached = {}
                    raise
        finally:
            for name in self._offsets:
                self._offsets[name] = dict(reached)
            self.applied += n
        return n

    def _fold_routed(self, batch: list[Event], routed: dict[str, Projection[Any]],
                     routes: dict[frozenset[type], _Routes]) -> None:
        """Fold into each projection that has only `apply` the events of `batch` of the types
        it handles, in log order: the batch's payload types (at C speed), then — once per mix
        of types, remembered in `routes` — who takes which, then one pass picking out the
        events anyone takes (in a log mostly of runs, a few), then each projection's share of
        those. (That pass is a comprehension: on events just decoded, it ran faster than
        `itertools.compress` over a mask.)"""
        kinds = list(map(type, map(_payload_of, batch)))
        present = frozenset(kinds)
        route = routes.get(present)
        if route is None:
            if len(routes) > 4096:  # (a bound: the mixes of types in batches are few in practice)
                routes.clear()
            shares = {}
            for name, projection in routed.items():
                handles = projection.handles or ()
                share = frozenset(k for k in present if issubclass(k, handles))
                if share:
                    shares[name] = share
            route = routes[present] = _Routes(shares, frozenset().union(*shares.values()))
        if not route.shares:
            return
        if route.taken == present:
            taken, taken_kinds = batch, kinds
        else:
            wanted = route.taken
            picked = [(e, k) for e, k in zip(batch, kinds) if k in wanted]
            taken, taken_kinds = [e for e, _ in picked], [k for _, k in picked]
        states = self.states
        for name, share in route.shares.items():
            events = taken if share == route.taken else [e for e, k in zip(taken, taken_kinds) if k in share]
            states[name] = routed[name].fold(events, states[name])

    def _reset(self) -> None:
        """Every read model back to its initial state, at the start of the log."""
        self._provisional_ids.clear()
        for name, projection in self.projections.items():
            self.states[name] = projection.initial()
            self._offsets[name] = {}

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
        """Save every projection's state with its cursor beside the log. Not while the cursor
        is provisional (it names a partition the store does not have: a fallback store's
        pending events, renumbered when they are synced): such a snapshot would count them
        twice once they are read back from the primary."""
        with self.lock:
            if any(_provisional(self.store, Cursor(offsets)) for offsets in self._offsets.values()):
                log.info("projection runner: cursor is provisional (pending events); snapshots not saved")
                return
            snaps = [
                Snapshot(name=name, schema=p.schema, cursor=str(Cursor(dict(self._offsets[name]))),
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
                if _provisional(self.store, cursor):
                    log.info("snapshot %s covers provisional positions: rebuilding", name)
                    continue
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
                log.warning("snapshot %s is unreadable (%s): rebuilding", name, exc)
                continue
            with self.lock:
                self.states[name] = state
                self._offsets[name] = dict(cursor.offsets)

    def close(self) -> None:
        self.stop()


def _provisional(store: EventStore, cursor: Cursor) -> bool:
    """Whether `cursor` names a partition `store` does not have (see `save_snapshots`)."""
    return any(p >= store.partitions for p in cursor.offsets)
