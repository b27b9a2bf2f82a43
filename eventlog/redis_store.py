"""`RedisStreamStore`: the log in Redis Streams, single server or Redis Cluster.

Key layout (prefix `el`, P partitions; `T` is the hash tag `{el:p}` of partition p, so every
key one append touches lives in one slot and one Lua script can do the whole append):

    el:config           hash: partitions, format             (checked at open)
    T:log               stream: the partition's ordered log; entry id `0-<seq>`, field `e` = event
                        JSON (sealed, without position) — seq is the event's `position`
    T:seq               counter of the last seq
    T:ids               hash: event id -> seq                 (idempotency)
    T:heads             hash: stream -> "<version> <hash>"     (chain heads; also the stream list)
    T:s:<stream>        list: seqs by version (index v-1)      (per-stream index)
    el:blob:<name>      string: projection snapshots (not part of the log)

A stream's partition is crc32(name) % P. The client seals events (version, prev_hash, hash)
against a cached head; the script checks ids, `expected_version` and that the head is still
the one the client sealed against, then XADDs — all atomically. A stale cache costs one
retry. Appending after an unknown outcome (a timeout, a failover) is safe: ids already stored
are not stored again.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import heapq
import itertools
import logging
import operator
import os
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import redis
from redis import exceptions as rex

from eventlog import codec
from eventlog.errors import (
    ConcurrencyError,
    CorruptLog,
    EventLogError,
    InvalidEvent,
    InvalidURL,
    StoreUnavailable,
)
from eventlog.events import Event
from eventlog.names import validate_stream
from eventlog.open import redact_url
from eventlog.store import EMPTY_HEAD, Cursor, EventStore, StreamHead, batched

log = logging.getLogger("eventlog.redis")

T = TypeVar("T")

FORMAT = "1"
BATCH = 1000
MAX_BATCH = 3000  # Lua's unpack() limit bounds one atomic append
_MAX_ROUTES = 65536  # streams whose append keys are cached
_MAX_HELD = 8  # idle connections the store keeps for its appends (more go back to the pool)
_APPEND_HEAD_ARGS = 8  # EVALSHA, sha, 5, the five KEYS: the part of an append packed per stream
# Failures that mean "cannot reach it now" (the outcome of a write is then unknown).
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    rex.ConnectionError, rex.TimeoutError, rex.BusyLoadingError, rex.ClusterDownError, rex.MasterDownError,
    rex.TryAgainError, ConnectionError, OSError,
)

# KEYS: log, seq, ids, heads, streamlist
# ARGV: stream, expected (-1 none), base_version, base_hash, new_head, n, id1..idn, json1..jsonn
# Ids come first, in one run, so HMGET takes them straight from ARGV (no table built for
# them). Replies: first_seq (an integer: the common case, cheapest to build and parse);
# {'DUP', seq1, json1, ...} ('' and '' for ids not stored, the stored event for those that
# are: a retry needs no further round trip); {'CONFLICT' | 'STALE', version, hash} with the
# actual head. Only the integer reply means something was written.
APPEND_LUA = """
local n = tonumber(ARGV[6])
local found = redis.call('HMGET', KEYS[3], unpack(ARGV, 7, 6 + n))
for i = 1, n do
  if found[i] then
    local out = {'DUP'}
    for j = 1, n do
      local seq, body = found[j], ''
      if seq then
        local entry = redis.call('XRANGE', KEYS[1], '0-' .. seq, '0-' .. seq)[1]
        if entry and entry[2][1] == 'e' then body = entry[2][2] end
      else
        seq = ''
      end
      out[2 * j] = seq; out[2 * j + 1] = body
    end
    return out
  end
end
local head = redis.call('HGET', KEYS[4], ARGV[1])
local version, hash = 0, ''
if head then
  local sp = string.find(head, ' ', 1, true)
  version = tonumber(string.sub(head, 1, sp - 1)); hash = string.sub(head, sp + 1)
end
local expected = tonumber(ARGV[2])
if expected >= 0 and expected ~= version then return {'CONFLICT', tostring(version), hash} end
if tonumber(ARGV[3]) ~= version or ARGV[4] ~= hash then return {'STALE', tostring(version), hash} end
local first = redis.call('INCRBY', KEYS[2], n) - n
local log, bodies = KEYS[1], 6 + n
local index, seqs = {}, {}
for i = 1, n do
  local seq = first + i
  redis.call('XADD', log, '0-' .. seq, 'e', ARGV[bodies + i])
  index[2 * i - 1] = ARGV[6 + i]; index[2 * i] = seq
  seqs[i] = seq
end
redis.call('HSET', KEYS[3], unpack(index))
redis.call('RPUSH', KEYS[5], unpack(seqs))
redis.call('HSET', KEYS[4], ARGV[1], ARGV[5])
return first + 1
"""

# KEYS: log, streamlist; ARGV: from_index (0-based), to_index (-1 = end)
READ_STREAM_LUA = """
local seqs = redis.call('LRANGE', KEYS[2], ARGV[1], ARGV[2])
local out = {}
for i, seq in ipairs(seqs) do
  local entry = redis.call('XRANGE', KEYS[1], '0-' .. seq, '0-' .. seq)
  if entry[1] then out[#out + 1] = seq; out[#out + 1] = entry[1][2][2] end
end
return out
"""


class _Route(NamedTuple):
    """A stream's append: its partition, the five KEYS of the script, the packed start of its
    EVALSHA (`EVALSHA sha 5 KEYS`, which `_pack_command` completes) and the lock that keeps
    this process's appends to the stream in turn. Correctness never rests on the lock (the
    script checks the head): two routes briefly made for one stream only cost a retry."""

    partition: int
    keys: list[str]
    command: bytes
    lock: threading.Lock


class _Config(msgspec.Struct):
    prefix: str = "el"
    partitions: int = 1
    max_event_bytes: int = codec.DEFAULT_MAX_EVENT_BYTES
    wait_replicas: int = 0


class RedisStreamStore(EventStore):
    """The production store (see the module docstring for the layout)."""

    def __init__(self, client: Any, *, prefix: str = "el", partitions: int = 1,
                 max_event_bytes: int = codec.DEFAULT_MAX_EVENT_BYTES, url: str = "redis://",
                 cluster: bool = False, wait_replicas: int = 0) -> None:
        if partitions < 1 or partitions > 1024:
            raise InvalidURL(f"partitions must be 1..1024, got {partitions}")
        if not prefix or any(c in prefix for c in "{}: \t\n"):
            raise InvalidURL(f"invalid key prefix {prefix!r} (no braces, colons or spaces)")
        self.client = client
        self.prefix = prefix
        self.partitions = partitions
        self.max_event_bytes = max_event_bytes
        self.url = redact_url(url)
        self.cluster = cluster
        # With N > 0 an append returns only after N replicas have it (Redis WAIT), so a
        # failover cannot lose an acknowledged event. 0: asynchronous replication (faster).
        self.wait_replicas = wait_replicas
        # stream -> cached head. Only ever read or replaced one key at a time (atomic dict
        # operations): a stale entry costs one STALE retry, never a wrong chain.
        self._heads: dict[str, StreamHead] = {}
        # EVALSHA is sent directly (see `_run_append`); redis-py's Script object only costs
        # time on the hot path. The digest is that of the script text, the same on every node.
        self._append_sha = hashlib.sha1(APPEND_LUA.encode()).hexdigest()
        # stream -> its `_Route`: per-call work that only depends on the name. Bounded like a
        # cache, cleared when full.
        self._routes: dict[str, _Route] = {}
        # A plain redis.Redis with a plain pool (not a cluster, not a subclass such as
        # fakeredis, not a Sentinel or blocking pool) sends appends over connections the
        # store holds itself (see `_append_direct`): redis-py's command path (pool checkout,
        # retry wrapper, metrics, event dispatch, packing) cost more client time per call
        # than the rest of the append together. Everything else (reads, config, blobs) keeps
        # using the client and its pool.
        # (Held connections count against the pool's max_connections: only a pool with room
        # to spare — from_url's has 100 — takes the direct path, or reads could starve.)
        pool = getattr(client, "connection_pool", None)
        self._direct = (not cluster and type(client) is redis.Redis and type(pool) is redis.ConnectionPool
                        and getattr(pool, "max_connections", 0) >= 4 * _MAX_HELD)
        self._held: list[Any] = []  # idle held connections (list pop/append are atomic)
        self._fork = _forks  # held connections and route locks are not a forked child's
        self._read_script = client.register_script(READ_STREAM_LUA)
        self._closed = False
        self._config_checked = False
        try:
            self._check_config()
        except StoreUnavailable as exc:
            # Redis may be down at start (the fallback store carries on); check on first use.
            log.warning("%s", exc)

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str) -> RedisStreamStore:
        """redis://, rediss:// (TLS), unix://, redis+cluster:// and rediss+cluster:// URLs;
        our own options (prefix, partitions, max_event_bytes) come off the query string."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        try:
            config = _Config(
                prefix=query.pop("prefix", "el"),
                partitions=int(query.pop("partitions", "0") or 0),
                max_event_bytes=int(query.pop("max_event_bytes", codec.DEFAULT_MAX_EVENT_BYTES)),
                wait_replicas=int(query.pop("wait_replicas", "0") or 0),
            )
        except ValueError as exc:
            raise InvalidURL(f"bad option in {redact_url(url)}: {exc}") from exc
        scheme = parts.scheme.lower()
        cluster = scheme.endswith("+cluster")
        base_scheme = scheme.replace("+cluster", "")
        clean = urlunsplit((base_scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
        common = {"socket_connect_timeout": 2.0, "socket_timeout": 5.0, "decode_responses": False}
        try:
            if cluster:
                client = _cluster_client(parts, base_scheme, query, common)
                partitions = config.partitions or 16
            else:
                client = redis.Redis.from_url(clean, health_check_interval=30, **common)
                # Our own client: XRANGE pages come back as Redis sends them, not as a dict
                # per entry (building those was a third of the cost of reading the log back).
                client.set_response_callback("XRANGE", _raw_reply)
                partitions = config.partitions or 1
        except (ValueError, TypeError) as exc:
            raise InvalidURL(f"cannot use {redact_url(url)}: {exc}") from exc
        return cls(client, prefix=config.prefix, partitions=partitions, max_event_bytes=config.max_event_bytes,
                   url=url, cluster=cluster, wait_replicas=config.wait_replicas)

    def _check_config(self) -> None:
        """The partition count is fixed for a log's lifetime: streams are placed by it."""
        key = f"{self.prefix}:config"
        stored = self._call(lambda: self.client.hgetall(key))
        if not stored:
            self._call(lambda: self.client.hsetnx(key, "partitions", self.partitions))
            self._call(lambda: self.client.hsetnx(key, "format", FORMAT))
            stored = self._call(lambda: self.client.hgetall(key))
        have = int(stored.get(b"partitions", self.partitions))
        self._config_checked = have == self.partitions
        if have != self.partitions:
            raise EventLogError(
                f"this log ({self.url}, prefix {self.prefix!r}) has {have} partitions; opened with "
                f"{self.partitions}. Use ?partitions={have}."
            )

    # --- keys -----------------------------------------------------------------------------

    def partition_of(self, stream: str) -> int:
        return zlib.crc32(stream.encode()) % self.partitions if self.partitions > 1 else 0

    def _tag(self, partition: int) -> str:
        return f"{self.prefix}:{{{self.prefix}:{partition}}}"

    def _keys(self, partition: int) -> tuple[str, str, str, str]:
        t = self._tag(partition)
        return f"{t}:log", f"{t}:seq", f"{t}:ids", f"{t}:heads"

    def _stream_key(self, partition: int, stream: str) -> str:
        return f"{self._tag(partition)}:s:{stream}"

    def _route(self, stream: str) -> _Route:
        """What an append to `stream` needs besides the events, cached."""
        route = self._routes.get(stream)
        if route is None:
            p = self.partition_of(stream)
            keys = [*self._keys(p), self._stream_key(p, stream)]
            route = _Route(p, keys, _packed_args(["EVALSHA", self._append_sha, len(keys), *keys]), threading.Lock())
            if len(self._routes) >= _MAX_ROUTES:
                self._routes.clear()
            self._routes[stream] = route
        return route

    # --- errors ---------------------------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` against Redis, translating "cannot reach it" into StoreUnavailable
        (the positional form spares the append path a closure per call)."""
        if self._closed:
            raise EventLogError(f"store {self.url} is closed")
        if not self._config_checked and not getattr(self, "_checking", False):
            self._checking = True
            try:
                self._check_config()
            finally:
                self._checking = False
        try:
            return fn(*args)
        except StoreUnavailable:
            raise  # already ours (a nested call): do not wrap it twice
        except rex.AuthenticationError as exc:  # (a ConnectionError subclass: test it first)
            raise StoreUnavailable(f"Redis at {self.url} refused the credentials: {_redacted(str(exc))}") from None
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis at {self.url} is unavailable: {type(exc).__name__}: "
                                   f"{_redacted(str(exc))}") from None
        except rex.ResponseError as exc:
            message = str(exc)
            if "NOAUTH" in message or "WRONGPASS" in message or "NOPERM" in message:
                raise StoreUnavailable(f"Redis at {self.url} refused the credentials") from None
            raise

    # --- append ---------------------------------------------------------------------------

    def _cached_head(self, partition: int, stream: str) -> StreamHead:
        head = self._heads.get(stream)
        if head is None:
            head = self._fetch_head(partition, stream)
        return head

    def _fetch_head(self, partition: int, stream: str) -> StreamHead:
        raw = self._call(lambda: self.client.hget(self._keys(partition)[3], stream))
        head = _parse_head(raw)
        self._heads[stream] = head
        return head

    def _append(self, stream: str, events: list[Event], expected_version: int | None) -> list[Event]:
        """Seal against the cached head and run the append script; on STALE reseal against
        the head the script reports, on DUP keep the stored twins and append the rest.

        The hot path is one EVALSHA per call: no Redis round trip besides it, and per event
        one seal (`codec.seal_run`: encode + SHA-256, needed for the chain) and one struct copy (the
        position is only known once the script has run)."""
        if len(events) > MAX_BATCH:
            raise InvalidEvent(f"at most {MAX_BATCH} events in one append on Redis (got {len(events)}): "
                               "the batch is one atomic script call; split it into several appends")
        if self._fork != _forks:
            self._after_fork()
        p, keys, command, lock = self._route(stream)
        # One append at a time per stream in this process: threads appending to one stream
        # would otherwise seal against the same head, all but one losing each round trip
        # (STALE) and a slow one losing 64 in a row. Other processes are still met by STALE.
        with lock:
            return self._append_locked(stream, events, expected_version, p, keys, command)

    def _append_locked(self, stream: str, events: list[Event], expected_version: int | None, p: int,
                       keys: list[str], command: bytes) -> list[Event]:
        max_bytes = self.max_event_bytes
        expected = -1 if expected_version is None else expected_version
        stored: dict[int, Event] = {}  # index in `events` -> the stored twin of a duplicate
        pending = list(range(len(events)))
        for _attempt in range(64):
            head = self._cached_head(p, stream)
            todo = events if len(pending) == len(events) else [events[i] for i in pending]
            sealed, bodies = codec.seal_run(todo, stream=stream, version=head.version, prev_hash=head.hash,
                                            position=None, max_bytes=max_bytes)
            n = len(sealed)
            version, prev = head.version + n, sealed[-1].hash
            args: list[Any] = [stream, expected, head.version, head.hash, f"{version} {prev}", n]
            args += [event.id for event in sealed]
            args += bodies
            if self._direct:
                reply = self._call(self._append_direct, command, args)
            else:
                reply = self._call(self._run_append, keys, args)
            if type(reply) is int:  # stored; the position of the first event
                first = reply
                if self.wait_replicas and not self._direct:  # (the direct path WAITs itself)
                    self._wait_replicas(keys[0])
                self._heads[stream] = StreamHead(version, prev)
                replace = msgspec.structs.replace
                for offset, i in enumerate(pending):
                    stored[i] = replace(sealed[offset], position=first + offset, partition=p)
                break
            status = reply[0]
            if status == b"DUP":
                for k, i in enumerate(pending):
                    seq = reply[1 + 2 * k]
                    if seq:
                        stored[i] = self._stored_twin(p, int(seq), reply[2 + 2 * k])
                pending = [i for i in pending if i not in stored]
                if not pending:
                    break
                continue
            actual = StreamHead(int(reply[1]), reply[2].decode())
            self._heads[stream] = actual
            if status == b"CONFLICT":
                raise ConcurrencyError(stream, expected, actual.version)
            # STALE: another writer moved the head; reseal against it and retry
        else:  # pragma: no cover - 64 lost races in a row
            raise StoreUnavailable(f"stream {stream!r}: too much contention, append not confirmed")
        return [stored[i] for i in range(len(events))]

    def _run_append(self, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA the append script; load it on NOSCRIPT (a restarted or failed-over server,
        SCRIPT FLUSH) and run it again. NOSCRIPT means the script did not run, so the second
        run cannot store anything twice. Sent with `execute_command`, which both redis-py
        clients route by the KEYS (one slot, thanks to the hash tag)."""
        try:
            return self.client.execute_command("EVALSHA", self._append_sha, 5, *keys, *args)
        except rex.NoScriptError:
            self._append_sha = self.client.script_load(APPEND_LUA)
            return self.client.execute_command("EVALSHA", self._append_sha, 5, *keys, *args)

    def _append_direct(self, command: bytes, args: list[Any]) -> Any:
        """`_run_append` over a connection the store holds (a plain redis.Redis client).

        `command` is the packed `EVALSHA sha 5 KEYS` of the stream (see `_route`). The
        connection comes from the client's pool once, so it was set up like any other (AUTH,
        TLS, SELECT, socket timeouts, health checks) and reconnects the same way. Each caller
        takes its own idle connection, so concurrent appends do not queue behind one socket.

        On a connection failure (a stale socket after a Redis restart, a timeout) the script is
        sent once more on a fresh connection, as redis-py's own retry would: safe, because the
        script is idempotent by event ids (a run that did land answers DUP with the stored
        twins) and checks the head. If that fails too the error goes up, and `_call` makes it
        StoreUnavailable. Any exception other than NOSCRIPT (handled in place, its reply read)
        disconnects the connection, so no reply is ever left unread on it.

        With `wait_replicas`, WAIT goes on the same connection right after a write: WAIT waits
        for the calling connection's own writes, so it means nothing on another connection."""
        try:
            conn = self._held.pop()
        except IndexError:
            conn = self.client.connection_pool.get_connection()
        try:
            packed = [_pack_command(command, _APPEND_HEAD_ARGS, args)]
            for attempt in (1, 2):
                if self._closed:  # close() ran meanwhile: no reconnecting behind its back
                    raise EventLogError(f"store {self.url} is closed")
                try:
                    conn.send_packed_command(packed)
                    try:
                        reply = conn.read_response()
                    except rex.NoScriptError:  # a complete error reply: the connection is clean
                        conn.send_command("SCRIPT", "LOAD", APPEND_LUA)
                        conn.read_response()
                        conn.send_packed_command(packed)
                        reply = conn.read_response()
                    break
                except (rex.ConnectionError, rex.TimeoutError, OSError):
                    conn.disconnect()
                    if attempt == 2:
                        raise
            acked = self.wait_replicas
            if acked and (type(reply) is int or reply[0] == b"DUP"):
                if type(reply) is not int:
                    # Stored by an earlier attempt whose reply was lost, maybe on another
                    # connection: WAIT counts this connection's writes, so write a probe
                    # first. Replication is one ordered stream, so replicas that have the
                    # probe have everything the primary wrote before it.
                    conn.send_command("INCR", f"{self.prefix}:wait-probe")
                    conn.read_response()
                conn.send_command("WAIT", self.wait_replicas, 2000)
                acked = int(conn.read_response())
        except BaseException:
            conn.disconnect()  # whatever happened mid-command, the next use starts afresh
            self._put_held(conn)
            raise
        self._put_held(conn)
        if acked < self.wait_replicas:
            raise _replicas_short(self.url, acked, self.wait_replicas)
        return reply

    def _put_held(self, conn: Any) -> None:
        if len(self._held) < _MAX_HELD and not self._closed:
            self._held.append(conn)
            if self._closed:  # close() ran meanwhile and may have missed it
                self._release_held()
            return
        if self._closed:
            conn.disconnect()  # the pool is closed: do not hand it a live socket
        self.client.connection_pool.release(conn)

    def _release_held(self) -> None:
        """Give the held connections back to the client's pool (which closes them when the
        client closes its pool; a pool passed in by the caller keeps them)."""
        while True:
            try:
                conn = self._held.pop()
            except IndexError:
                return
            if self._fork == _forks:
                self.client.connection_pool.release(conn)

    def _after_fork(self) -> None:
        """In a forked child: the held connections' sockets are the parent's (drop them
        unused; the pool resets itself likewise) and a route's lock may have been held by a
        parent thread that does not exist here (make new routes)."""
        self._held = []
        self._routes = {}
        self._fork = _forks

    def _stored_twin(self, partition: int, seq: int, data: bytes) -> Event:
        """The event an id is already stored as (the DUP reply carries its stored bytes)."""
        if not data:
            raise CorruptLog(f"{self.url}: entry 0-{seq} of partition {partition} is missing")
        return self._decode(data, seq, partition)

    def _wait_replicas(self, key: str) -> None:
        def wait() -> int:
            if self.cluster:
                node = self.client.get_node_from_key(key)
                return int(self.client.execute_command("WAIT", self.wait_replicas, 2000, target_nodes=node))
            return int(self.client.wait(self.wait_replicas, 2000))

        acked = self._call(wait)
        if acked < self.wait_replicas:
            raise _replicas_short(self.url, acked, self.wait_replicas)

    def stored_ids(self, events: Iterable[Event]) -> set[str]:
        """Which of `events` (by id, in their stream's partition) this log already holds:
        one HMGET of the id index per partition."""
        by_partition: dict[int, list[str]] = {}
        for event in events:
            by_partition.setdefault(self.partition_of(event.stream), []).append(event.id)
        found: set[str] = set()
        for p, ids in by_partition.items():
            key = self._keys(p)[2]
            for i in range(0, len(ids), 1000):
                chunk = ids[i:i + 1000]
                seqs = self._call(self.client.hmget, key, chunk)
                found.update(event_id for event_id, seq in zip(chunk, seqs) if seq is not None)
        return found

    # --- reading --------------------------------------------------------------------------

    def _decode(self, data: bytes, seq: int, partition: int, upcast: bool = True) -> Event:
        event = codec.decode(data, upcast=upcast)
        return msgspec.structs.replace(event, position=seq, partition=partition)

    def _read(self, stream: str, from_version: int, to_version: int | None) -> Iterator[Event]:
        p = self.partition_of(stream)
        keys = [self._keys(p)[0], self._stream_key(p, stream)]
        stop = -1 if to_version is None else to_version - 1
        if to_version is not None and to_version < from_version:
            return iter(())
        reply = self._call(lambda: self._read_script(keys=keys, args=[from_version - 1, stop]))
        events = []
        for i in range(0, len(reply), 2):
            seq = int(reply[i])
            try:
                events.append(self._decode(reply[i + 1], seq, p))
            except CorruptLog as exc:
                raise CorruptLog(f"{self.url}: stream {stream!r}, entry 0-{seq}: {exc}") from None
        return iter(events)

    def _partition_entries(self, partition: int, after: int, upcast: bool, lazy_runs: bool = False) -> Iterator[Event]:
        for events in self._partition_batches(partition, after, upcast, lazy_runs):
            yield from events

    def _partition_batches(self, partition: int, after: int, upcast: bool,
                           lazy_runs: bool = False) -> Iterator[list[Event]]:
        """A partition's log after `after`, as decoded runs of up to 100 entries."""
        key = self._keys(partition)[0]
        start = after + 1
        set_field = msgspec.structs.force_setattr
        while True:
            entries = self._call(self.client.xrange, key, f"0-{start}", "+", BATCH)
            if not entries:
                return
            start = int(entries[-1][0].split(b"-")[1]) + 1
            # The common page: every entry is ours, [b"e", data] under id 0-<position>, as
            # Redis sends it (see _raw_reply): checked and taken apart by C-level passes, and
            # decoded in one call per run of 100 (a run's events are still in the CPU cache
            # when they are used). Anything else goes entry by entry.
            fields = list(map(_second, entries))
            positions = _positions(entries) if _all_ours(fields) else None
            if positions is None:
                yield list(self._decode_entries(entries, partition, upcast))
            else:
                for i in range(0, len(entries), 100):
                    page = fields[i:i + 100]
                    events = codec.decode_entries(list(map(_second, page)), upcast=upcast, lazy_runs=lazy_runs)
                    if events is None:  # an entry that is not exactly one current event
                        yield list(self._decode_entries(entries[i:i + 100], partition, upcast))
                        continue
                    # just decoded, referenced nowhere else: place each instead of copying it
                    _consume(map(set_field, events, _repeat("position"), positions[i:i + 100]))
                    if partition:
                        _consume(map(set_field, events, _repeat("partition"), _repeat(partition, len(events))))
                    yield events
            if len(entries) < BATCH:
                return

    def _decode_entries(self, entries: list[Any], partition: int, upcast: bool) -> Iterator[Event]:
        """Entry by entry, skipping (and reporting) what is not an event of ours."""
        for entry_id, fields in entries:
            seq = int(entry_id.split(b"-")[1])
            try:
                # [b"e", data] as Redis sends it, or a dict from a client that parses replies
                # (a Redis Cluster client, a client passed in)
                if type(fields) is list and len(fields) == 2 and fields[0] == b"e":
                    data = fields[1]
                else:
                    data = (fields if type(fields) is dict else dict(zip(fields[::2], fields[1::2]))).get(b"e")
                    if data is None:
                        raise CorruptLog("entry has no 'e' field")
                yield msgspec.structs.replace(codec.decode(data, upcast=upcast), position=seq, partition=partition)
            except CorruptLog as exc:
                # Written by another client? Skip and report; verify() reports it as a gap.
                log.warning("%s: skipping unreadable entry %s of partition %d: %s", self.url,
                            entry_id.decode(), partition, exc)

    def _read_all(self, after: Cursor, *, upcast: bool, lazy_runs: bool = False) -> Iterator[Event]:
        if self.partitions == 1:
            yield from self._partition_entries(0, after.get(0), upcast, lazy_runs)
            return
        iterators = [
            ((e.id, e.partition, e.position, e) for e in self._partition_entries(p, after.get(p), upcast, lazy_runs))
            for p in range(self.partitions)
        ]
        for *_, event in heapq.merge(*iterators):
            yield event

    def read_batches_for_fold(self, after: Cursor | int | str | None = None, *,
                              lazy_runs: bool = False) -> Iterator[list[Event]]:
        cursor = Cursor.of(after)
        if self.partitions == 1:
            return self._partition_batches(0, cursor.get(0), True, lazy_runs)
        return batched(self._read_all(cursor, upcast=True, lazy_runs=lazy_runs))

    def _wait_for_append(self, cursor: Cursor, seconds: float, stop: threading.Event | None) -> None:
        if self.cluster or self.partitions > 1:
            super()._wait_for_append(cursor, seconds, stop)
            return
        block = max(1, int(min(seconds, 0.5) * 1000))
        key = self._keys(0)[0]
        try:
            self._call(lambda: self.client.xread({key: f"0-{cursor.get(0)}"}, count=1, block=block))
        except StoreUnavailable:
            super()._wait_for_append(cursor, seconds, stop)

    def _streams(self) -> Iterable[str]:
        names: list[str] = []
        for p in range(self.partitions):
            key = self._keys(p)[3]
            names.extend(k.decode() for k in self._call(lambda k=key: self.client.hkeys(k)))
        return names

    def _head(self, stream: str) -> StreamHead:
        return self._fetch_head(self.partition_of(stream), stream)

    def last_position(self) -> Cursor:
        offsets = {}
        for p in range(self.partitions):
            key = self._keys(p)[1]
            offsets[p] = int(self._call(lambda k=key: self.client.get(k)) or 0)
        return Cursor(offsets)

    # --- blobs, info, lifecycle -----------------------------------------------------------

    def put_blob(self, name: str, data: bytes) -> None:
        validate_stream(name)
        self._call(lambda: self.client.set(f"{self.prefix}:blob:{name}", data))

    def get_blob(self, name: str) -> bytes | None:
        validate_stream(name)
        value = self._call(lambda: self.client.get(f"{self.prefix}:blob:{name}"))
        return None if value is None else bytes(value)

    def info(self) -> dict[str, Any]:
        """What `eventlog doctor` needs: version, persistence, eviction policy, memory."""
        server = self._call(lambda: self.client.info("server"))
        persistence = self._call(lambda: self.client.info("persistence"))
        memory = self._call(lambda: self.client.info("memory"))
        if self.cluster:  # one node's answer per section is enough for a summary
            server, persistence, memory = (_first_node(server), _first_node(persistence), _first_node(memory))
        try:
            save = self._call(lambda: self.client.config_get("save"))
            policy = self._call(lambda: self.client.config_get("maxmemory-policy"))
        except rex.ResponseError:  # CONFIG may be disabled (managed Redis)
            save, policy = {}, {}
        if self.cluster:
            save, policy = _first_node(save), _first_node(policy)
        result: dict[str, Any] = {
            "url": self.url,
            "redis_version": server.get("redis_version"),
            "aof_enabled": bool(int(persistence.get("aof_enabled", 0))),
            "rdb_save": _text(save.get("save", save.get(b"save", ""))),
            "maxmemory_policy": _text(policy.get("maxmemory-policy", policy.get(b"maxmemory-policy", ""))),
            "used_memory": memory.get("used_memory"),
            "cluster": self.cluster,
            "partitions": self.partitions,
            "prefix": self.prefix,
        }
        if self.cluster:
            cluster_info = self._call(lambda: self.client.cluster_info())
            result["cluster_state"] = _text(_first_node(cluster_info).get("cluster_state", ""))
        return result

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):  # closing a broken connection must not raise
            self._release_held()
        with contextlib.suppress(Exception):
            self.client.close()


_forks = 0  # how many forks deep this process is: a store made before a fork notices it


def _forked() -> None:
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):  # (POSIX; nothing forks elsewhere)
    os.register_at_fork(after_in_child=_forked)


def _raw_reply(response: Any, **options: Any) -> Any:
    return response


def _packed_args(args: list[Any]) -> bytes:
    """Arguments (str, int or bytes) in RESP, without the command header: the start of a
    command that `_pack_command` completes."""
    return _pack_command(b"", 0, args).partition(b"\r\n")[2]


def _pack_command(packed: bytes, count: int, args: list[Any]) -> bytes:
    """A Redis command in RESP: `count` arguments already packed in `packed`, then `args`
    (str, int or bytes). The bytes redis-py's packer sends, without its per-call checks and
    copies of every argument."""
    parts = [b"*%d\r\n" % (count + len(args)), packed]
    for arg in args:
        kind = type(arg)
        if kind is bytes:
            data = arg
        elif kind is str:
            data = arg.encode()
        elif kind is int:
            data = b"%d" % arg
        elif isinstance(arg, str):  # a str subclass (an enum's value, say)
            data = str.encode(arg)
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % int(arg)
        else:
            data = bytes(arg)
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _replicas_short(url: str, acked: int, wanted: int) -> StoreUnavailable:
    return StoreUnavailable(f"{url}: only {acked} of {wanted} replicas confirmed the append in time; it is "
                            "stored on the primary (retrying is safe)")


def _parse_head(raw: bytes | None) -> StreamHead:
    if not raw:
        return EMPTY_HEAD
    version, _, digest = raw.decode().partition(" ")
    return StreamHead(int(version), digest)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _first_node(value: Any) -> dict[Any, Any]:
    """Cluster commands may answer per node ({node: reply}); take one node's reply."""
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return dict(next(iter(value.values())))
    return dict(value) if isinstance(value, dict) else {}


def _redacted(message: str) -> str:
    """Connection errors may quote the URL; never let a password through."""
    return redact_url(message) if "://" in message else message


def _cluster_client(parts: Any, scheme: str, query: dict[str, str], common: dict[str, Any]) -> Any:
    from redis.cluster import ClusterNode, RedisCluster

    hosts = parts.netloc.rpartition("@")[2]
    nodes = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        nodes.append(ClusterNode(host or "127.0.0.1", int(port or 6379)))  # type: ignore[no-untyped-call]
    kwargs: dict[str, Any] = dict(common)
    if parts.username:
        kwargs["username"] = parts.username
    if parts.password:
        kwargs["password"] = parts.password
    if scheme == "rediss":
        kwargs["ssl"] = True
        for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"):
            if key in query:
                kwargs[key] = query[key]
    return RedisCluster(startup_nodes=nodes, **kwargs)


_first = operator.itemgetter(0)
_second = operator.itemgetter(1)
_id_prefix = operator.itemgetter(slice(0, 2))
_id_sequence = operator.itemgetter(slice(2, None))
_repeat = itertools.repeat


def _consume(iterator: Iterator[Any]) -> None:
    collections.deque(iterator, maxlen=0)


def _all_ours(fields: list[Any]) -> bool:
    """Whether every entry of a page is `[b"e", data]` as this store writes it (one C-level
    pass per property instead of a Python test per entry)."""
    return (set(map(type, fields)) == {list} and set(map(len, fields)) == {2}
            and set(map(_first, fields)) == {b"e"})


def _positions(entries: list[Any]) -> range | list[int] | None:
    """The positions of a page whose ids are all `0-<position>` (this store's ids); None if
    any is not. Ids rise along a stream, so when the first and last are `0-a` and `0-b` and
    the page holds b - a + 1 entries, its ids are exactly 0-a .. 0-b (the usual page: no
    entry deleted in between) and nothing per entry needs reading."""
    first, last = entries[0][0], entries[-1][0]
    if first[:2] == b"0-" and last[:2] == b"0-":
        try:
            a, b = int(first[2:]), int(last[2:])
        except ValueError:
            return None
        if b - a + 1 == len(entries):
            return range(a, b + 1)
    ids = list(map(_first, entries))
    if set(map(_id_prefix, ids)) != {b"0-"}:
        return None
    try:
        return list(map(int, map(_id_sequence, ids)))
    except ValueError:
        return None
