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

import contextlib
import heapq
import logging
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar
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
from eventlog.store import EMPTY_HEAD, Cursor, EventStore, StreamHead

log = logging.getLogger("eventlog.redis")

T = TypeVar("T")

FORMAT = "1"
BATCH = 1000
MAX_BATCH = 3000  # Lua's unpack() limit bounds one atomic append
# Failures that mean "cannot reach it now" (the outcome of a write is then unknown).
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    rex.ConnectionError, rex.TimeoutError, rex.BusyLoadingError, rex.ClusterDownError, rex.MasterDownError,
    rex.TryAgainError, ConnectionError, OSError,
)

# KEYS: log, seq, ids, heads, streamlist
# ARGV: stream, expected (-1 none), base_version, base_hash, new_head, n, id1, json1, id2, json2...
APPEND_LUA = """
local n = tonumber(ARGV[6])
local ids = {}
for i = 1, n do ids[i] = ARGV[5 + 2 * i] end
local found = redis.call('HMGET', KEYS[3], unpack(ids))
local any_dup = false
for i = 1, n do
  if found[i] then any_dup = true else found[i] = '' end
end
if any_dup then return {'DUP', unpack(found)} end
local head = redis.call('HGET', KEYS[4], ARGV[1])
local version, hash = 0, ''
if head then
  local sp = string.find(head, ' ', 1, true)
  version = tonumber(string.sub(head, 1, sp - 1)); hash = string.sub(head, sp + 1)
end
local expected = tonumber(ARGV[2])
if expected >= 0 and expected ~= version then return {'CONFLICT', tostring(version), hash} end
if tonumber(ARGV[3]) ~= version or ARGV[4] ~= hash then return {'STALE', tostring(version), hash} end
local last = redis.call('INCRBY', KEYS[2], n)
local first = last - n + 1
local pairs_ = {}
local seqs = {}
for i = 1, n do
  local seq = first + i - 1
  redis.call('XADD', KEYS[1], '0-' .. seq, 'e', ARGV[6 + 2 * i])
  pairs_[2 * i - 1] = ids[i]; pairs_[2 * i] = seq
  seqs[i] = seq
end
redis.call('HSET', KEYS[3], unpack(pairs_))
redis.call('RPUSH', KEYS[5], unpack(seqs))
redis.call('HSET', KEYS[4], ARGV[1], ARGV[5])
return {'OK', tostring(first)}
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
        self._heads: dict[str, StreamHead] = {}
        self._lock = threading.Lock()
        self._append_script = client.register_script(APPEND_LUA)
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

    # --- errors ---------------------------------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise EventLogError(f"store {self.url} is closed")
        if not self._config_checked and not getattr(self, "_checking", False):
            self._checking = True
            try:
                self._check_config()
            finally:
                self._checking = False
        try:
            return fn()
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
        with self._lock:
            head = self._heads.get(stream)
        if head is None:
            head = self._fetch_head(partition, stream)
        return head

    def _fetch_head(self, partition: int, stream: str) -> StreamHead:
        raw = self._call(lambda: self.client.hget(self._keys(partition)[3], stream))
        head = _parse_head(raw)
        with self._lock:
            self._heads[stream] = head
        return head

    def _append(self, stream: str, events: list[Event], expected_version: int | None) -> list[Event]:
        if len(events) > MAX_BATCH:
            raise InvalidEvent(f"at most {MAX_BATCH} events in one append on Redis (got {len(events)}): "
                               "the batch is one atomic script call; split it into several appends")
        p = self.partition_of(stream)
        log_key, seq_key, ids_key, heads_key = self._keys(p)
        keys = [log_key, seq_key, ids_key, heads_key, self._stream_key(p, stream)]
        stored: dict[int, Event] = {}  # index in `events` -> the stored twin of a duplicate
        pending = list(range(len(events)))
        for _attempt in range(64):
            head = self._cached_head(p, stream)
            sealed: list[Event] = []
            bodies: list[bytes] = []
            version, prev = head
            for i in pending:
                version += 1
                event, body = codec.seal_encoded(events[i], stream=stream, version=version, prev_hash=prev,
                                                 max_bytes=self.max_event_bytes)
                prev = event.hash
                sealed.append(event)
                bodies.append(body)
            if not sealed:
                break
            args: list[Any] = [stream, -1 if expected_version is None else expected_version, head.version,
                               head.hash, f"{version} {prev}", len(sealed)]
            for event, body in zip(sealed, bodies):
                args.extend((event.id, body))
            reply = self._call(lambda a=args: self._append_script(keys=keys, args=a))  # type: ignore[misc]
            status = reply[0]
            if status == b"OK":
                first = int(reply[1])
                if self.wait_replicas:
                    self._wait_replicas(log_key)
                with self._lock:
                    self._heads[stream] = StreamHead(version, prev)
                for offset, (i, event) in enumerate(zip(pending, sealed)):
                    stored[i] = msgspec.structs.replace(event, position=first + offset, partition=p)
                break
            if status == b"DUP":
                for i, seq in zip(pending, reply[1:]):
                    if seq:
                        stored[i] = self._event_at(p, int(seq))
                pending = [i for i in pending if i not in stored]
                continue
            actual = StreamHead(int(reply[1]), reply[2].decode())
            with self._lock:
                self._heads[stream] = actual
            if status == b"CONFLICT":
                raise ConcurrencyError(stream, expected_version if expected_version is not None else -1,
                                       actual.version)
            # STALE: another writer moved the head; reseal against it and retry
        else:  # pragma: no cover - 64 lost races in a row
            raise StoreUnavailable(f"stream {stream!r}: too much contention, append not confirmed")
        return [stored[i] for i in range(len(events))]

    def _wait_replicas(self, key: str) -> None:
        def wait() -> int:
            if self.cluster:
                node = self.client.get_node_from_key(key)
                return int(self.client.execute_command("WAIT", self.wait_replicas, 2000, target_nodes=node))
            return int(self.client.wait(self.wait_replicas, 2000))

        acked = self._call(wait)
        if acked < self.wait_replicas:
            raise StoreUnavailable(f"{self.url}: only {acked} of {self.wait_replicas} replicas confirmed the append "
                                   "in time; it is stored on the primary (retrying is safe)")

    # --- reading --------------------------------------------------------------------------

    def _decode(self, data: bytes, seq: int, partition: int, upcast: bool = True) -> Event:
        event = codec.decode(data, upcast=upcast)
        return msgspec.structs.replace(event, position=seq, partition=partition)

    def _event_at(self, partition: int, seq: int) -> Event:
        entries = self._call(lambda: self.client.xrange(self._keys(partition)[0], f"0-{seq}", f"0-{seq}"))
        if not entries:
            raise CorruptLog(f"{self.url}: entry 0-{seq} of partition {partition} is missing")
        return self._decode(_field(entries[0]), seq, partition)

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

    def _partition_entries(self, partition: int, after: int, upcast: bool) -> Iterator[Event]:
        key = self._keys(partition)[0]
        start = after + 1
        while True:
            entries = self._call(lambda s=start: self.client.xrange(key, f"0-{s}", "+", count=BATCH))  # type: ignore[misc]
            if not entries:
                return
            for entry_id, fields in entries:
                seq = int(entry_id.split(b"-")[1])
                data = fields.get(b"e")
                try:
                    if data is None:
                        raise CorruptLog("entry has no 'e' field")
                    yield self._decode(data, seq, partition, upcast)
                except CorruptLog as exc:
                    # Written by another client? Skip and report; verify() reports it as a gap.
                    log.warning("%s: skipping unreadable entry %s of partition %d: %s", self.url,
                                entry_id.decode(), partition, exc)
                start = seq + 1
            if len(entries) < BATCH:
                return

    def _read_all(self, after: Cursor, *, upcast: bool) -> Iterator[Event]:
        if self.partitions == 1:
            yield from self._partition_entries(0, after.get(0), upcast)
            return
        iterators = [
            ((e.id, e.partition, e.position, e) for e in self._partition_entries(p, after.get(p), upcast))
            for p in range(self.partitions)
        ]
        for *_, event in heapq.merge(*iterators):
            yield event

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
            names.extend(k.decode() for k in self._call(lambda k=key: self.client.hkeys(k)))  # type: ignore[misc]
        return names

    def _head(self, stream: str) -> StreamHead:
        return self._fetch_head(self.partition_of(stream), stream)

    def last_position(self) -> Cursor:
        offsets = {}
        for p in range(self.partitions):
            key = self._keys(p)[1]
            offsets[p] = int(self._call(lambda k=key: self.client.get(k)) or 0)  # type: ignore[misc]
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
            self.client.close()


def _parse_head(raw: bytes | None) -> StreamHead:
    if not raw:
        return EMPTY_HEAD
    version, _, digest = raw.decode().partition(" ")
    return StreamHead(int(version), digest)


def _field(entry: Any) -> bytes:
    _, fields = entry
    data = fields.get(b"e")
    if data is None:
        raise CorruptLog("entry has no 'e' field")
    return bytes(data)


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
