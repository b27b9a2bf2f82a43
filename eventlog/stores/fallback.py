"""`FallbackStore`: Redis first; the file store while Redis is away; back to Redis after.

While the primary raises `StoreUnavailable`, appends go to the secondary and succeed. A
health-check thread notices when the primary is back and runs `sync()`, which replays the
secondary's pending events into the primary in log order. Replays are appends by event id,
so an interrupted sync rerun stores nothing twice; a checkpoint (the secondary position
already replayed) just saves work. New appends keep going to the secondary until it is
drained, so each stream's order is preserved, then switch back under the append lock.

Versions of events taken while degraded are provisional: the primary re-seals them (new
version, new chain hash) when they are replayed; the ids stay. `expected_version` while
degraded is checked by the file store under its exclusive lock, so across processes each
expected version is won by exactly one writer.

A primary that has lost the log (`LogLost`, `LogDiverged`: Redis restarted empty, evicted,
replaced) is not replayed into: appends keep going to the file (with an error logged),
reads and `sync` raise, `verify` reports it, until the log is back (a restored backup) or
the operator adopts the log Redis holds now (`adopt_primary`). The primary's log id is kept
in the file store's directory (`fallback_identity`), so a process started after the loss
knows it too.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import msgspec

from eventlog.errors import ConcurrencyError, LogLost, StoreUnavailable
from eventlog.events import Event
from eventlog.integrity import VerifyReport, lost_report
from eventlog.store import Cursor, EventStore, StreamHead
from eventlog.stores import fallback_identity
from eventlog.urls import redact_url

log = logging.getLogger("eventlog.fallback")

T = TypeVar("T")

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
        # After a read of the primary failed, reads skip it until this time or until the
        # health check finds it back (a frozen Redis costs one timeout, not one per read);
        # appends skip it while degraded.
        self._down_until = 0.0
        self._lost: LogLost | None = None
        self._recorded_id: str | None = None
        self._hold_primary_to_record()
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

    @property
    def lost(self) -> LogLost | None:
        """Why the primary cannot be written to or read from as the log (None: it can)."""
        return self._lost

    def _mark_degraded(self, exc: Exception) -> None:
        if not self._degraded:
            self._degraded = True
            log.warning("primary %s unavailable (%s); appending to %s until it returns",
                        redact_url(self.primary.url), exc, self.secondary.url)
            self._save_record()

    def _mark_lost(self, exc: LogLost) -> None:
        if self._lost is None:
            log.error("%s -- appending to %s instead; nothing is replayed into Redis until the log is back "
                      "or adopted", exc, self.secondary.url)
            self._save_record()
        self._lost = exc
        self._degraded = True

    @property
    def unreachable(self) -> bool:
        """Whether the primary is taken to be away now: an append to it failed and the file
        has not been replayed since, or a read of it failed lately (or the log is lost)."""
        return self._degraded or self._primary_down()

    def note_unreachable(self) -> None:
        """A reader beside this store (a read index on the primary) found the primary away:
        reads skip it until the health check finds it back, as after a failed read here."""
        self._read_failed()

    def has_pending(self) -> bool:
        """Whether any event waits in the file for the primary (one `stat` and one read of
        the file's tail; False if the file cannot be read)."""
        return self._has_pending_safe()

    def _primary_down(self) -> bool:
        return self._down_until > 0 and time.monotonic() < self._down_until

    def _read_failed(self) -> None:
        """A read of the primary failed: reads skip it until the health check finds it back
        (at most 30 s; without the health thread, `health_interval`)."""
        wait = 30.0 if self._thread is not None else self._health_interval
        self._down_until = time.monotonic() + wait

    # --- the primary's identity (see fallback_identity) -----------------------------------

    def _record_dir(self) -> Path | None:
        path = getattr(self.secondary, "path", None)
        return Path(path) if path is not None else None

    def _hold_primary_to_record(self) -> None:
        """Tell the primary which log it must be (the one the pending events belong to)."""
        record = fallback_identity.load(self._record_dir())
        expect = getattr(self.primary, "expect_log", None)
        if record is None or expect is None:
            return
        self._recorded_id = record.log_id
        try:
            expect(record.log_id, record.seen)
            self.primary.head("health/check")  # (checks the identity now, if Redis is there)
        except StoreUnavailable:
            pass  # checked on first use
        except LogLost as exc:
            self._mark_lost(exc)

    def _save_record(self) -> None:
        log_id = getattr(self.primary, "log_id", None)
        if log_id is None:
            return
        seen: dict[int, int] = getattr(self.primary, "seen_positions", dict)()
        with contextlib.suppress(OSError):
            fallback_identity.save(self._record_dir(), fallback_identity.Record(log_id=log_id, seen=seen))
            self._recorded_id = log_id

    def _note_primary(self) -> None:
        """After a write to the primary: record its log id the first time it is seen."""
        if getattr(self.primary, "log_id", None) != self._recorded_id:
            self._save_record()

    def adopt_primary(self) -> None:
        """Accept the log the primary holds now as this fallback's log (after an operator
        restored or re-imported it under a new identity): the record is dropped, the primary
        forgets what it saw of the old one, and pending events are replayed into it by the
        next sync. Only for an operator who has checked that this is the right log."""
        with self._lock:
            fallback_identity.forget(self._record_dir())
            self._recorded_id = None
            reset = getattr(self.primary, "forget_log", None)
            if reset is not None:
                reset()
            self._lost = None

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
                    written = self.primary.append(stream, events, expected_version)
                except StoreUnavailable as exc:  # (a refused write too: StoreRefused)
                    self._mark_degraded(exc)
                except LogLost as exc:
                    self._mark_lost(exc)
                else:
                    self._note_primary()
                    return written
            if expected_version is None:
                return _as_pending(self.secondary.append(stream, events))
            # Checked by the file store under its exclusive lock, in its own numbering: two
            # processes racing for one expected version cannot both win.
            offset = self._version_offset(stream)
            if expected_version - offset < 0:
                raise ConcurrencyError(stream, expected_version, self._union_head(stream).version)
            try:
                return _as_pending(self.secondary.append(stream, events, expected_version - offset))
            except ConcurrencyError as exc:
                raise ConcurrencyError(stream, expected_version, exc.actual + offset) from None

    def _version_offset(self, stream: str) -> int:
        """Union version minus the file's version of `stream` (what `expected_version` must
        be shifted by for the file store): 0 while the primary is away or has lost the log
        (reads then number the stream as the file does); else the primary's head less the
        stream's events the file holds that are already replayed."""
        if self._lost is not None:
            return 0
        try:
            head = self._from_primary(lambda: self.primary.head(stream), None)
        except LogLost:  # (marked: the append goes on into the file)
            return 0
        if head is None:
            return 0
        pending = len(self._pending_events(stream))
        return head.version - (self.secondary.head(stream).version - pending)

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
            try:
                self.primary.head("health/check")  # (the log's identity, checked first)
            except LogLost as exc:
                self._mark_lost(exc)
                raise
            self._lost = None
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
                try:
                    stored = self.primary.append(batch[0].stream, [_unsealed(e) for e in batch])
                except LogLost as exc:
                    self._mark_lost(exc)
                    raise
                self._note_primary()
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
                self._down_until = 0.0
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
            if not self._degraded and not self._primary_down() and not self._has_pending_safe():
                continue
            try:
                self.primary.head("health/check")
            except (StoreUnavailable, LogLost):  # (a lost log was said once, when found)
                continue
            except Exception:  # never let the checker die
                log.exception("fallback health check failed")
                continue
            self._down_until = 0.0  # reads may ask it again
            if not self._degraded and not self._has_pending_safe():
                continue
            try:
                self.sync()
            except (StoreUnavailable, LogLost):
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

    def _from_primary(self, read: Callable[[], T], default: T) -> T:
        """`read()` of the primary, or `default` while it is unreachable (after a failure it
        is not asked again for `health_interval`: a frozen Redis costs one timeout, not one
        per read). A lost log raises: nothing is read as if it were the whole log."""
        if self._lost is not None:
            raise self._lost
        if self._primary_down():
            return default
        try:
            return read()
        except StoreUnavailable:
            self._read_failed()
            return default
        except LogLost as exc:
            self._mark_lost(exc)
            raise

    def _union_head(self, stream: str) -> StreamHead:
        pending = self._pending_events(stream)
        head = None if self._lost is not None else self._from_primary(lambda: self.primary.head(stream), None)
        if head is None:  # the primary away: the stream as the file holds it
            known = list(self.secondary.read(stream))
            return StreamHead(len(known), known[-1].hash if known else "")
        if pending:
            return StreamHead(head.version + len(pending), pending[-1].hash)
        return head

    def _read(self, stream: str, from_version: int, to_version: int | None) -> Iterator[Event]:
        primary = self._from_primary(lambda: list(self.primary.read(stream)), None)
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
        if self._lost is not None:
            raise self._lost
        if self._degraded or self._has_pending_safe():  # (which takes up other processes' syncs)
            start = max(self._synced.get(0), after.get(PENDING_PARTITION))
            pending = list(self.secondary._read_all(Cursor({0: start}), upcast=upcast))
        if not self._primary_down():
            try:
                yield from self.primary._read_all(after, upcast=upcast)
            except StoreUnavailable:
                self._read_failed()
            except LogLost as exc:
                self._mark_lost(exc)
                raise
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
        names.update(self._from_primary(self.primary.streams, []))
        return names

    def _head(self, stream: str) -> StreamHead:
        if self._lost is not None:
            raise self._lost
        return self._union_head(stream)

    def last_position(self) -> Cursor:
        """The primary's end and, while events are pending, the pending ones' end (under
        `PENDING_PARTITION`, as `read_all` numbers them)."""
        cursor = self._from_primary(self.primary.last_position, Cursor())
        if self._degraded or self._has_pending_safe():
            end = self.secondary.last_position().get(0)
            if end > self._synced.get(0):
                cursor = Cursor({**cursor.offsets, PENDING_PARTITION: end})
        return cursor

    def verify(self, *, resume: bool = False, expect_root: str | None = None,
               progress: Callable[[int], None] | None = None) -> VerifyReport:
        """The primary's log (pending events are not in its chain yet: a sync re-seals them
        there), and while events are pending the file's own log too, reporting the first
        that fails; the file's alone while the primary is unreachable. A lost log is a
        break of its own (kind `lost`); what the file store set aside is in `recovered`."""
        if self._lost is not None:
            report = lost_report(self._lost)
        else:
            try:
                report = self.primary.verify(resume=resume, expect_root=expect_root, progress=progress)
            except StoreUnavailable:
                report = self.secondary.verify(resume=resume, progress=progress)
            else:
                if report.ok and self._has_pending_safe():
                    own = self.secondary.verify(resume=resume, progress=progress)
                    if not own.ok:
                        report = own
        recovered = list(getattr(self.secondary, "recovered", None) or ())
        if recovered and not report.recovered:
            report.recovered = recovered
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
        if self._recorded_id is not None or getattr(self.primary, "log_id", None) is not None:
            self._save_record()  # (the positions seen, for the next process)
        self.primary.close()
        self.secondary.close()


def _as_pending(events: list[Event]) -> list[Event]:
    """Events the file took, as `read_all` hands them out: under `PENDING_PARTITION`, at
    their place in the file (so a caller can tell them from events Redis took)."""
    replace = msgspec.structs.replace
    return [replace(e, partition=PENDING_PARTITION) for e in events]


def _unsealed(event: Event) -> Event:
    """The event as a caller would append it: the primary assigns its own place and chain."""
    return msgspec.structs.replace(event, stream="", version=0, position=0, partition=0, prev_hash="", hash="")
