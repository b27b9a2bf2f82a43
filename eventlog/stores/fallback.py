"""`FallbackStore`: Redis first; the file store while Redis is away; back to Redis after.

While the primary raises `StoreUnavailable`, appends go to the secondary and succeed. A
health-check thread notices when the primary is back and runs `sync()`, which replays the
secondary's pending events into the primary in log order. Replays are appends by event id,
so an interrupted sync rerun stores nothing twice; a checkpoint (the secondary position
already replayed) just saves work. New appends keep going to the secondary until it is
drained, so each stream's order is preserved, then switch back under the append lock.

Versions of events taken while degraded are provisional: the primary re-seals them (new
version, new chain hash) when they are replayed; the ids stay. `expected_version` while
degraded is checked against what this process can see (best effort across processes).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import msgspec

from eventlog.errors import ConcurrencyError, StoreUnavailable
from eventlog.events import Event
from eventlog.integrity import VerifyReport
from eventlog.store import Cursor, EventStore, StreamHead
from eventlog.urls import redact_url

log = logging.getLogger("eventlog.fallback")

# The partition pending events are read under (see `FallbackStore._read_all`): beyond any real
# partition count (at most 1024).
PENDING_PARTITION = 1 << 20


class SyncSummary(msgspec.Struct, kw_only=True):
    replayed: int = 0  # newly stored in the primary
    already_present: int = 0  # ids the primary had already (a rerun, or another syncer)
    remaining: int = 0  # still pending (sync stopped early)
    complete: bool = True


class FallbackStore(EventStore):
    """Primary (Redis) with a secondary (file) for when it is unreachable."""

    def __init__(self, primary: EventStore, secondary: EventStore, *, health_interval: float = 1.0,
                 auto_sync: bool = True) -> None:
        self.primary = primary
        self.secondary = secondary
        self.url = f"fallback({redact_url(primary.url)} -> {redact_url(secondary.url)})"
        self.max_event_bytes = min(primary.max_event_bytes, secondary.max_event_bytes)
        self.partitions = primary.partitions
        self._lock = threading.RLock()
        self._degraded = False
        self._stop = threading.Event()
        self._synced = Cursor.of(self._load_checkpoint())
        self._checkpoint_seen = self._checkpoint_stamp()
        self._health_interval = health_interval
        self._thread: threading.Thread | None = None
        if auto_sync:
            self._thread = threading.Thread(target=self._health_loop, name="eventlog-fallback", daemon=True)
            self._thread.start()

    # --- state ----------------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        return self._degraded

    def pending(self) -> int:
        """Events in the secondary not yet replayed into the primary."""
        self._refresh_synced()
        return sum(1 for _ in self.secondary.read_all(after=self._synced))

    def _mark_degraded(self, exc: Exception) -> None:
        if not self._degraded:
            self._degraded = True
            log.warning("primary %s unavailable (%s); appending to %s until it returns",
                        redact_url(self.primary.url), exc, self.secondary.url)

    # --- checkpoint -----------------------------------------------------------------------

    def _checkpoint_path(self) -> Path | None:
        path = getattr(self.secondary, "path", None)
        return Path(path) / "sync.checkpoint" if path is not None else None

    def _checkpoint_stamp(self) -> tuple[int, int, int] | None:
        path = self._checkpoint_path()
        try:
            st = os.stat(path) if path is not None else None
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size) if st is not None else None

    def _refresh_synced(self) -> None:
        """Take up another process's sync of the same file store (the shared checkpoint
        moved): events it replayed are not pending here either. One `stat` when nothing
        changed; the checkpoint only moves forward."""
        stamp = self._checkpoint_stamp()
        if stamp == self._checkpoint_seen:
            return
        self._checkpoint_seen = stamp
        theirs = Cursor.of(self._load_checkpoint())
        if theirs.get(0) > self._synced.get(0):
            self._synced = theirs

    def _load_checkpoint(self) -> str | None:
        path = self._checkpoint_path()
        try:
            return path.read_text().strip() if path is not None else None
        except FileNotFoundError:
            return None

    def _save_checkpoint(self) -> None:
        """Write the checkpoint atomically (a temp file of this writer's own, then rename),
        never moving it backwards: two processes syncing one file store may finish batches
        in any order, and a checkpoint that went back would only cost a rerun, one that
        jumped ahead of what is in the primary would lose events."""
        path = self._checkpoint_path()
        if path is None:
            return
        lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            theirs = Cursor.of(self._load_checkpoint())
            if theirs.get(0) > self._synced.get(0):
                self._synced = theirs  # another process got further
                return
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(str(self._synced))
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        finally:
            os.close(lock_fd)  # (releases the lock)

    # --- writing --------------------------------------------------------------------------

    def _append(self, stream: str, events: list[Event], expected_version: int | None) -> list[Event]:
        with self._lock:
            if not self._degraded and not self._has_pending():
                try:
                    return self.primary.append(stream, events, expected_version)
                except StoreUnavailable as exc:
                    self._mark_degraded(exc)
            if expected_version is not None and self._union_head(stream).version != expected_version:
                raise ConcurrencyError(stream, expected_version, self._union_head(stream).version)
            return self.secondary.append(stream, events)

    def _has_pending(self) -> bool:
        self._refresh_synced()
        return next(iter(self.secondary.read_all(after=self._synced)), None) is not None

    def sync(self, progress: Callable[[int, int], None] | None = None) -> SyncSummary:
        """Replay pending secondary events into the primary, in order, idempotently.

        `progress(done, total)` is called as it goes; raising from it stops the sync (what was
        replayed stays replayed, and a rerun continues). Raises `StoreUnavailable` if the
        primary is still away."""
        summary = SyncSummary()
        with self._lock:
            self._refresh_synced()
            pending = list(self.secondary.read_all(after=self._synced))
            total = len(pending)
            before = self.primary.last_position() if pending else Cursor()
            done = 0
            i = 0
            while i < total:
                j = i
                while j < total and pending[j].stream == pending[i].stream and j - i < 500:
                    j += 1
                batch = pending[i:j]
                stored = self.primary.append(batch[0].stream, [_unsealed(e) for e in batch])
                for recorded in stored:  # stored before this sync began => it was already there
                    if recorded.position > before.get(recorded.partition):
                        summary.replayed += 1
                    else:
                        summary.already_present += 1
                for event in batch:
                    self._synced = self._synced.advanced(event)
                self._save_checkpoint()
                done += len(batch)
                i = j
                if progress is not None:
                    try:
                        progress(done, total)
                    except BaseException:
                        summary.remaining = total - done
                        summary.complete = False
                        raise
            if self._degraded:
                self._degraded = False
                log.warning("primary %s is back; %d pending events replayed", redact_url(self.primary.url), total)
        return summary

    def stop_auto_sync(self) -> None:
        """Stop the background health check (a short-lived process that syncs by hand, like
        `eventlog sync`, does not want it to race its own sync)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _health_loop(self) -> None:
        while not self._stop.wait(self._health_interval):
            if not self._degraded and not self._has_pending_safe():
                continue
            try:
                self.primary.head("health/check")
            except StoreUnavailable:
                continue
            except Exception:  # never let the checker die
                log.exception("fallback health check failed")
                continue
            try:
                self.sync()
            except StoreUnavailable:
                continue
            except Exception:
                log.exception("automatic sync failed; will retry")

    def _has_pending_safe(self) -> bool:
        try:
            return self._has_pending()
        except Exception:
            return False

    # --- reading --------------------------------------------------------------------------

    def _pending_events(self, stream: str | None = None) -> list[Event]:
        self._refresh_synced()
        events = self.secondary.read_all(after=self._synced)
        return [e for e in events if stream is None or e.stream == stream]

    def _union_head(self, stream: str) -> StreamHead:
        pending = self._pending_events(stream)
        try:
            head = self.primary.head(stream)
        except StoreUnavailable:
            head = StreamHead(0, "")
            known = list(self.secondary.read(stream))
            return StreamHead(len(known), known[-1].hash if known else "")
        if pending:
            return StreamHead(head.version + len(pending), pending[-1].hash)
        return head

    def _read(self, stream: str, from_version: int, to_version: int | None) -> Iterator[Event]:
        try:
            primary = list(self.primary.read(stream))
        except StoreUnavailable:
            primary = None
        replace = msgspec.structs.replace
        if primary is None:  # what the file holds, in the file's numbering
            events = [replace(e, partition=PENDING_PARTITION) for e in self.secondary.read(stream)]
        else:
            seen = {e.id for e in primary}
            extra = [e for e in self._pending_events(stream) if e.id not in seen]
            head = len(primary)
            events = primary + [replace(e, version=head + k + 1, partition=PENDING_PARTITION)
                                for k, e in enumerate(extra)]
        return iter([e for e in events
                     if e.version >= from_version and (to_version is None or e.version <= to_version)])

    def _read_all(self, after: Cursor, *, upcast: bool) -> Iterator[Event]:
        """The primary's log; while events are pending, followed by those not yet in it.

        Pending events are numbered in the secondary's log, not the primary's, so they come
        under a partition of their own (`PENDING_PARTITION`): a cursor covers both, and a
        reader resuming from it gets each pending event once. A pending event the primary
        already holds (a sync part way or by another process, a replayed batch or an append
        whose reply was lost) is the primary's: it is never yielded as pending, so whoever
        read it from the primary does not get it twice. Once replayed, an event comes from
        the primary, under the primary's numbering: a reader that folded it as pending must
        know it by id (`ProjectionRunner` does)."""
        pending: list[Event] = []
        if self._degraded or self._has_pending_safe():  # (which takes up other processes' syncs)
            start = max(self._synced.get(0), after.get(PENDING_PARTITION))
            pending = list(self.secondary._read_all(Cursor({0: start}), upcast=upcast))
        with contextlib.suppress(StoreUnavailable):
            yield from self.primary._read_all(after, upcast=upcast)
        held = self.held_by_primary(pending) if pending else set()
        replace = msgspec.structs.replace
        for event in pending:
            if event.id not in held:
                yield replace(event, partition=PENDING_PARTITION)

    def held_by_primary(self, events: list[Event]) -> set[str]:
        """The ids among `events` the primary already stores (by its id index when it has one,
        else by reading it); none while it is unreachable."""
        try:
            lookup = getattr(self.primary, "stored_ids", None)
            if lookup is not None:
                found: set[str] = lookup(events)
                return found
            wanted = {e.id for e in events}
            return {e.id for e in self.primary.read_all() if e.id in wanted}
        except StoreUnavailable:
            return set()

    def _streams(self) -> Iterable[str]:
        names = set(self.secondary.streams()) if self._degraded or self._has_pending_safe() else set()
        with contextlib.suppress(StoreUnavailable):
            names.update(self.primary.streams())
        return names

    def _head(self, stream: str) -> StreamHead:
        return self._union_head(stream)

    def last_position(self) -> Cursor:
        """The primary's end and, while events are pending, the pending ones' end (under
        `PENDING_PARTITION`, as `read_all` numbers them)."""
        try:
            cursor = self.primary.last_position()
        except StoreUnavailable:
            cursor = Cursor()
        if self._degraded or self._has_pending_safe():
            end = self.secondary.last_position().get(0)
            if end > self._synced.get(0):
                cursor = Cursor({**cursor.offsets, PENDING_PARTITION: end})
        return cursor

    def verify(self, *, resume: bool = False, expect_root: str | None = None,
               progress: Callable[[int], None] | None = None) -> VerifyReport:
        """The primary's log (pending events are not in its chain yet: a sync re-seals them
        there), and while events are pending the file's own log too, reporting the first
        that fails; the file's alone while the primary is unreachable."""
        try:
            report = self.primary.verify(resume=resume, expect_root=expect_root, progress=progress)
        except StoreUnavailable:
            return self.secondary.verify(resume=resume, progress=progress)
        if report.ok and self._has_pending_safe():
            own = self.secondary.verify(resume=resume, progress=progress)
            if not own.ok:
                return own
        return report

    def put_blob(self, name: str, data: bytes) -> None:
        try:
            self.primary.put_blob(name, data)
        except StoreUnavailable:
            self.secondary.put_blob(name, data)

    def get_blob(self, name: str) -> bytes | None:
        try:
            return self.primary.get_blob(name)
        except StoreUnavailable:
            return self.secondary.get_blob(name)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.primary.close()
        self.secondary.close()


def _unsealed(event: Event) -> Event:
    """The event as a caller would append it: the primary assigns its own place and chain."""
    return msgspec.structs.replace(event, stream="", version=0, position=0, partition=0, prev_hash="", hash="")
