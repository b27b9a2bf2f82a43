"""The identity of a Redis log: which log a store writes to, and what it has seen of it.

A log gets an id when it is created (`<prefix>:config` field `log_id`, and a copy in every
partition's `T:logid`, the slot the append script runs in). A store remembers the id and the
highest position of each partition it has seen acknowledged or read. The append, stream-read
and first-page scripts check the id on every call; the whole identity is checked again at
connect and after every connection failure. So a Redis that comes back empty (restarted
without persistence, flushed), whose keys were evicted, that was restored from an older
backup or replaced by another log raises `LogLost` / `LogDiverged` instead of taking new
events at version 1 as if nothing had happened.

What it cannot see: a process that starts after the loss and never saw the log. (The
fallback store keeps the id and positions in its directory for that; see `FallbackStore`.)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from eventlog.errors import EventLogError, LogDiverged, LogLost
from eventlog.ids import new_id

log = logging.getLogger("eventlog.redis")

T = TypeVar("T")

FORMAT = "1"
_DATA_KEYS = ("seq", "log", "ids", "heads")  # a partition's keys besides its stream lists


class LogIdentity:
    """The identity checks of `RedisStreamStore`; what they need of the store is declared."""

    client: Any
    url: str
    prefix: str
    partitions: int
    _log_id: str | None
    _seen: dict[int, int]
    _seen_lock: threading.Lock
    _config_checked: bool
    _identity_lock: threading.RLock

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError

    def _tag(self, partition: int) -> str:
        raise NotImplementedError

    # --- what the store knows -------------------------------------------------------------

    @property
    def log_id(self) -> str | None:
        """The id of the log this store writes to (None until it has reached Redis once)."""
        return self._log_id

    def seen_positions(self) -> dict[int, int]:
        """The highest position of each partition this store has seen acknowledged or read."""
        return dict(self._seen)

    def expect_log(self, log_id: str, seen: dict[int, int] | None = None) -> None:
        """Hold this store to a log known from elsewhere (the fallback's record of it): from
        now on a Redis that does not hold that log, or holds less of it, is a lost log."""
        found, self._log_id = self._log_id, log_id  # held to it from now on, whatever Redis holds
        self._config_checked = False
        for partition, position in (seen or {}).items():
            self._saw(int(partition), int(position))
        if found is not None and found != log_id:
            raise LogDiverged(
                f"Redis at {self.url} holds another log (id {found}) than the one written to so far "
                f"(id {log_id}): it was replaced, restored from another log's backup or re-imported. "
                "Nothing was written; see docs/operations.md (restore the right backup, or adopt the new "
                "log: eventlog sync --adopt)")

    def forget_log(self) -> None:
        """Forget the log this store knew (an operator adopted the one Redis holds now)."""
        self._log_id = None
        self._seen = {}
        self._config_checked = False

    def _saw(self, partition: int, position: int) -> None:
        if position > self._seen.get(partition, 0):
            with self._seen_lock:
                if position > self._seen.get(partition, 0):
                    self._seen[partition] = position

    def _id_key(self, partition: int) -> str:
        return f"{self._tag(partition)}:logid"

    # --- the checks -----------------------------------------------------------------------

    def _check_config(self, create: bool = False) -> None:
        """The log's config and identity, checked at every (re)connect; created (`create`)
        by the first append, so that opening or reading an empty Redis writes nothing.

        The partition count is fixed for a log's lifetime (streams are placed by it). The id
        goes into the config first and into each partition after; `sealed` says all
        partitions have it, so a partition without one afterwards has lost its keys."""
        with self._identity_lock:  # (threads of one store check one at a time)
            # Checked by the caller it waited for. (Not while there is no log yet: that is
            # looked at again on each use, so a log another client creates is found.)
            if self._config_checked and self._log_id is not None and not create:
                return
            self._check_config_locked(create)

    def _check_config_locked(self, create: bool) -> None:
        key = f"{self.prefix}:config"
        stored: dict[bytes, bytes] = self._call(self.client.hgetall, key)
        if not stored and self._log_id is not None:
            raise self._lost(f"it holds no log under prefix {self.prefix!r} (no {key})")
        if not stored:
            for partition in range(self.partitions):
                tag = self._tag(partition)
                if self._call(self.client.exists, self._id_key(partition), *(f"{tag}:{k}" for k in _DATA_KEYS)):
                    stored = self._call(self.client.hgetall, key)  # another process creating the log just now?
                    if stored:
                        break
                    raise self._lost(f"its config {key} is gone (evicted or deleted) but partition {partition} "
                                     "still holds keys of a log")
        if not stored and not create:
            self._config_checked = True  # no log yet: looked at again before each use
            return
        if not stored or b"log_id" not in stored or b"sealed" not in stored:
            stored = self._create(key, stored)
        have = int(stored.get(b"partitions", self.partitions))
        if have != self.partitions:
            raise EventLogError(
                f"this log ({self.url}, prefix {self.prefix!r}) has {have} partitions; opened with "
                f"{self.partitions}. Use ?partitions={have}."
            )
        log_id = stored[b"log_id"].decode()
        if self._log_id is not None and log_id != self._log_id:
            raise LogDiverged(
                f"Redis at {self.url} holds another log (id {log_id}) than the one written to so far "
                f"(id {self._log_id}): it was replaced or restored from another log's backup. Nothing "
                "was written; see docs/operations.md (restore the right backup, or adopt the new log: "
                "eventlog sync --adopt)")
        for partition in range(self.partitions):
            found = self._call(self.client.get, self._id_key(partition))
            if found is None:
                raise self._lost(f"partition {partition} has lost its keys ({self._id_key(partition)} is gone: "
                                 "evicted or deleted)")
            if found.decode() != log_id:
                raise LogDiverged(f"Redis at {self.url}: partition {partition} belongs to log {found.decode()}, "
                                  f"the config to log {log_id}")
            seen = self._seen.get(partition, 0)
            if seen:
                seq = int(self._call(self.client.get, f"{self._tag(partition)}:seq") or 0)
                if seq < seen:
                    raise self._lost(f"partition {partition} ends at position {seq}, but positions up to {seen} "
                                     "were acknowledged: restored from an older backup, or keys evicted",
                                     log_id=log_id)
        self._log_id = log_id
        self._config_checked = True

    def _create(self, key: str, stored: dict[bytes, bytes]) -> dict[bytes, bytes]:
        """Create the log's identity (a new log, or one from before identities: adopted)."""
        if stored and b"log_id" not in stored:
            log.warning("%s: log under prefix %r has no id yet (made by an older version); giving it one",
                        self.url, self.prefix)
        self._call(self.client.hsetnx, key, "partitions", self.partitions)
        self._call(self.client.hsetnx, key, "format", FORMAT)
        self._call(self.client.hsetnx, key, "log_id", new_id())
        stored = self._call(self.client.hgetall, key)  # whoever created it first won
        log_id = stored[b"log_id"]
        for partition in range(self.partitions):
            self._call(self.client.setnx, self._id_key(partition), log_id)
        self._call(self.client.hsetnx, key, "sealed", 1)
        result: dict[bytes, bytes] = self._call(self.client.hgetall, key)
        return result

    def _lost(self, what: str, log_id: str | None = None) -> LogLost:
        seen = ", ".join(f"partition {p} up to position {n}" for p, n in sorted(self._seen.items()) if n) or "none"
        return LogLost(
            f"Redis at {self.url} has lost log {log_id or self._log_id}: {what}. Acknowledged before: {seen}. "
            "Nothing was written. Restore Redis from its AOF/RDB backup, or `eventlog import` an export "
            "and `eventlog sync` (docs/operations.md)")

    def _reply_lost(self, reply: list[Any], partition: int, stream: str | None = None) -> LogLost:
        """The error for a script's LOST / EVICTED / BEHIND reply (and the whole identity is
        checked again before the next command)."""
        self._config_checked = False
        status = reply[0]
        detail = reply[1].decode() if len(reply) > 1 and isinstance(reply[1], bytes) else str(reply[1:])
        where = f"partition {partition}" + (f" (stream {stream!r})" if stream else "")
        if status == b"LOST" and detail:
            return LogDiverged(f"Redis at {self.url}: {where} belongs to log {detail}, not to log {self._log_id} "
                               "written to so far: it was replaced or restored from another log's backup. "
                               "Nothing was written (docs/operations.md)")
        if status == b"LOST":
            return self._lost(f"{where} holds none of it (restarted empty, flushed or evicted)")
        if status == b"BEHIND":
            return self._lost(f"{where} ends at position {detail}, before what this process saw")
        return self._lost(f"keys of {where} were evicted ({detail} keys missing; maxmemory-policy must be "
                          "noeviction)")
