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

The module is the connection, the keys and the append; the reads are in `redis_reads`, the
held-connection append path in `redis_held`, the scripts in `redis_scripts`, the URL and error
mapping in `redis_connect`.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import importlib.util
import logging
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, TypeVar

import msgspec
import redis
from redis import exceptions as rex

from eventlog import codec
from eventlog.aio_bridge import in_bridge
from eventlog.errors import (
    ConcurrencyError,
    CorruptLog,
    EventLogError,
    InvalidEvent,
    InvalidURL,
    LogLost,
    StoreUnavailable,
)
from eventlog.events import Event
from eventlog.integrity import VerifyReport, lost_report
from eventlog.names import validate_stream
from eventlog.positions import EMPTY_HEAD, StreamHead
from eventlog.stores import redis_wire
from eventlog.stores.redis_connect import DEFAULT_TIMEOUT, client_from_url, first_node, text, translate
from eventlog.stores.redis_held import _APPEND_HEAD_ARGS, _MAX_HELD, HeldConnections, _replicas_short
from eventlog.stores.redis_identity import FORMAT, LogIdentity
from eventlog.stores.redis_reads import BATCH, RedisReads
from eventlog.stores.redis_scripts import APPEND_LUA, FIRST_PAGE_LUA, READ_STREAM_LUA
from eventlog.stores.redis_wire import _pack_command, _packed_args
from eventlog.urls import redact_url

__all__ = [
    "BATCH",
    "FORMAT",
    "MAX_BATCH",
    "_APPEND_HEAD_ARGS",
    "_MAX_HELD",
    "RedisStreamStore",
    "_pack_command",
    "_packed_args",
]

log = logging.getLogger("eventlog.redis")
# The stores whose log identity this context (thread, or bridged coroutine) is checking: their
# commands go through `_call` without a check of their own (see `_call`).
_CHECKING: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar("eventlog_redis_checking",
                                                                           default=frozenset())

T = TypeVar("T")

MAX_BATCH = 3000  # Lua's unpack() limit bounds one atomic append
_MAX_ROUTES = 65536  # streams whose append keys are cached


class _Route(NamedTuple):
    """A stream's append: its partition, the six KEYS of the script, the packed start of its
    EVALSHA (`EVALSHA sha 6 KEYS`, which `_pack_command` completes) and the lock that keeps
    this process's appends to the stream in turn. Correctness never rests on the lock (the
    script checks the head): two routes briefly made for one stream only cost a retry."""

    partition: int
    keys: list[str]
    command: bytes
    lock: Any  # threading.Lock, or a BridgeLock once the store serves asyncio (`enable_asyncio`)


class RedisStreamStore(LogIdentity, HeldConnections, RedisReads):
    """The production store (see the module docstring for the layout)."""

    def __init__(self, client: Any, *, prefix: str = "el", partitions: int = 1,
                 max_event_bytes: int = codec.DEFAULT_MAX_EVENT_BYTES, url: str = "redis://",
                 cluster: bool = False, wait_replicas: int = 0, timeout: float = DEFAULT_TIMEOUT,
                 async_client: Callable[[], Any] | None = None) -> None:
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
        # How long WAIT waits for replicas: within the socket timeout, so that "too few
        # replicas" is told apart from "Redis does not answer".
        self.wait_ms = max(1, min(2000, int(timeout * 500)))
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
        self._fork = redis_wire._forks  # held connections and route locks are not a forked child's
        self._read_script = client.register_script(READ_STREAM_LUA)
        self._page_script = client.register_script(FIRST_PAGE_LUA)
        self._closed = False
        # How to make a redis.asyncio client of the same URL (None: built from a client, not a
        # URL; such a store cannot serve asyncio natively) and whether it does (`enable_asyncio`).
        self._async_client = async_client
        self._reopen: Callable[[], RedisStreamStore] | None = None
        self.bridged = False
        self._new_lock: Callable[[], Any] = threading.Lock
        self._config_checked = False
        # The log this store writes to and what it has seen of it (see redis_identity).
        self._log_id: str | None = None
        self._seen: dict[int, int] = {}
        self._seen_lock = threading.Lock()
        self._identity_lock = threading.RLock()
        try:
            self._call(_nothing)  # the log's config and identity (see redis_identity)
        except StoreUnavailable as exc:
            # Redis may be down at start (the fallback store carries on); check on first use.
            log.warning("%s", exc)
        except LogLost as exc:  # said again, as an error, by every use until it is resolved
            log.error("%s", exc)

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str) -> RedisStreamStore:
        """redis://, rediss:// (TLS), unix://, redis+cluster:// and rediss+cluster:// URLs;
        our own options (prefix, partitions, max_event_bytes) come off the query string."""
        conn = client_from_url(url)
        options = conn.options
        store = cls(conn.client, prefix=options.prefix, partitions=conn.partitions,
                    max_event_bytes=options.max_event_bytes, url=url, cluster=conn.cluster,
                    wait_replicas=options.wait_replicas, timeout=options.timeout, async_client=conn.async_client)
        store._reopen = lambda: cls.from_url(url)  # (the URL, secrets included, only in this closure)
        return store

    def reopen(self) -> RedisStreamStore:
        """A new store on the same URL: its own connections and locks, sync only (what
        another process on the log would be). Only for a store opened from a URL."""
        if self._reopen is None:
            raise EventLogError(f"store {self.url} was made from a client, not a URL: cannot reopen it")
        return self._reopen()

    def enable_asyncio(self) -> bool:
        """Serve coroutines natively from now on: inside `eventlog.aio_bridge.run_bridged`
        every command goes through a redis.asyncio client (see `redis_aio`) and the locks
        held across I/O become `BridgeLock`s; sync callers keep the sync client and the
        held-connection appends. Call it before the store is shared with other threads.
        False: this store cannot (made from a client rather than a URL, or no greenlet)."""
        if self.bridged:
            return True
        if self._async_client is None:
            return False
        if importlib.util.find_spec("greenlet") is None:  # (the `os` extra brings it)
            return False
        from eventlog.aio_bridge import BridgeLock
        from eventlog.stores.redis_aio import BridgedRedis

        self.client = BridgedRedis(self.client, self._async_client)
        self._read_script = self.client.register_script(READ_STREAM_LUA)
        self._page_script = self.client.register_script(FIRST_PAGE_LUA)
        self._identity_lock = BridgeLock(reentrant=True)  # type: ignore[assignment]
        self._new_lock = BridgeLock
        self._routes = {}  # (their locks were thread locks)
        self.bridged = True
        return True

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
            keys = [*self._keys(p), self._stream_key(p, stream), self._id_key(p)]
            route = _Route(p, keys, _packed_args(["EVALSHA", self._append_sha, len(keys), *keys]), self._new_lock())
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
        if not self._config_checked and id(self) not in _CHECKING.get():
            # Only the check's own commands skip it (a context of its own per thread and per
            # bridged coroutine): any other caller meanwhile waits for the check on the
            # identity lock and then finds it done (or raising), never sending a command to a
            # server whose log has not been recognised.
            token = _CHECKING.set(_CHECKING.get() | {id(self)})
            try:
                self._check_config()
            finally:
                _CHECKING.reset(token)
        try:
            return fn(*args)
        except StoreUnavailable:
            raise  # already ours (a nested call): do not wrap it twice
        except Exception as exc:
            ours = translate(exc, self.url)
            if ours is None:
                raise
            if type(ours) is StoreUnavailable:
                # It may come back another server (restarted empty, failed over, replaced):
                # the log's identity is checked again before the next command.
                self._config_checked = False
            raise ours from None

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
        if self._fork != redis_wire._forks:
            self._after_fork()
        if self._log_id is None or not self._config_checked:
            self._ensure_identity(create=True)
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
        # The held connections are raw sockets: a bridged append (on the event loop) goes
        # through the client, whose EVALSHA is awaited on redis.asyncio.
        bridged = self.bridged and in_bridge()
        direct = self._direct and not bridged
        # (WAIT counts the calling connection's writes: a bridged append that waits for
        # replicas sends both on one connection, as the direct path does.)
        waiting = bridged and bool(self.wait_replicas) and not self.cluster
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
            args += [self._log_id, self._seen.get(p, 0)]
            if direct:
                reply = self._call(self._append_direct, command, args)
            elif waiting:
                reply = self._call(self._append_and_wait, keys, args)
            else:
                reply = self._call(self._run_append, keys, args)
            if type(reply) is int:  # stored; the position of the first event
                first = reply
                if self.wait_replicas and not direct and not waiting:  # (those WAIT themselves)
                    self._wait_replicas(keys[0])
                self._heads[stream] = StreamHead(version, prev)
                self._saw(p, first + n - 1)
                replace = msgspec.structs.replace
                for offset, i in enumerate(pending):
                    stored[i] = replace(sealed[offset], position=first + offset, partition=p)
                break
            status = reply[0]
            if status in _LOST:
                raise self._reply_lost(reply, p, stream)
            if status == b"DUP":
                for k, i in enumerate(pending):
                    seq = reply[1 + 2 * k]
                    if seq:
                        stored[i] = self._stored_twin(p, int(seq), reply[2 + 2 * k])
                pending = [i for i in pending if i not in stored]
                if not pending:
                    # Stored by an earlier attempt whose reply was lost: confirmed only once
                    # replicas have it, as a first store would be (the direct and bridged
                    # paths WAIT on DUP themselves).
                    if self.wait_replicas and not direct and not waiting:
                        self._wait_replicas(keys[0])
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
            return self.client.execute_command("EVALSHA", self._append_sha, len(keys), *keys, *args)
        except rex.NoScriptError:
            self._append_sha = self.client.script_load(APPEND_LUA)
            return self.client.execute_command("EVALSHA", self._append_sha, len(keys), *keys, *args)

    def _append_and_wait(self, keys: list[str], args: list[Any]) -> Any:
        """`_run_append` and its WAIT on one redis.asyncio connection (in a bridge). As on the
        direct path, a DUP (stored by an earlier attempt, maybe on another connection) WAITs
        after a probe write, since WAIT only counts this connection's writes."""
        conn = self.client.single_connection()
        try:
            try:
                reply = conn.execute_command("EVALSHA", self._append_sha, len(keys), *keys, *args)
            except rex.NoScriptError:
                self._append_sha = conn.script_load(APPEND_LUA)
                reply = conn.execute_command("EVALSHA", self._append_sha, len(keys), *keys, *args)
            if type(reply) is int or reply[0] == b"DUP":
                if type(reply) is not int:
                    conn.incr(f"{self.prefix}:wait-probe")
                acked = int(conn.wait(self.wait_replicas, self.wait_ms))
                if acked < self.wait_replicas:
                    raise _replicas_short(self.url, acked, self.wait_replicas)
        finally:
            conn.close()
        return reply

    def _stored_twin(self, partition: int, seq: int, data: bytes) -> Event:
        """The event an id is already stored as (the DUP reply carries its stored bytes)."""
        if not data:
            raise CorruptLog(f"{self.url}: entry 0-{seq} of partition {partition} is missing")
        return self._decode(data, seq, partition)

    def _wait_replicas(self, key: str) -> None:
        """WAIT for the replicas of `key`'s node to have what was written to it. WAIT counts the
        calling connection's own writes, and redis-py may hand this call another connection of
        its pool than the append's (another thread took that one, or the append was stored by
        an earlier attempt): so a probe write and the WAIT go in one pipeline, on one
        connection. Replication is one ordered stream: replicas that have the probe have
        everything the node wrote before it."""
        probe = key.rsplit(":", 1)[0] + ":wait-probe"  # (the partition's hash tag: its node)

        def wait() -> int:
            client = self.client.get_redis_connection(self.client.get_node_from_key(key)) if self.cluster \
                else self.client
            pipe = client.pipeline(transaction=False)
            pipe.incr(probe)
            pipe.wait(self.wait_replicas, self.wait_ms)
            return int(pipe.execute()[1])

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

    # --- blobs, info, lifecycle -----------------------------------------------------------

    def put_blob(self, name: str, data: bytes) -> None:
        validate_stream(name)
        self._call(lambda: self.client.set(f"{self.prefix}:blob:{name}", data))

    def get_blob(self, name: str) -> bytes | None:
        validate_stream(name)
        value = self._call(lambda: self.client.get(f"{self.prefix}:blob:{name}"))
        return None if value is None else bytes(value)

    def info(self) -> dict[str, Any]:
        """What `eventlog doctor` needs: version, persistence, eviction policy, memory, and
        whether the log this store knows is still there (`log_problem`)."""
        problem = None
        try:
            self._call(self._check_config)
        except LogLost as exc:
            problem = str(exc)
        with self._identity_unchecked():
            result = self._info()
        result["log_id"] = self._log_id
        result["log_problem"] = problem
        return result

    def _ensure_identity(self, create: bool = False) -> None:
        """Know the log's identity before sending a script that checks it (None after this:
        there is no log yet; `create` makes one, for the first append)."""
        if not self._config_checked or self._log_id is None:
            self._call(_nothing)  # (`_call` checks the config and identity first)
            if self._log_id is None:
                self._call(self._check_config, create)

    @contextlib.contextmanager
    def _identity_unchecked(self) -> Iterator[None]:
        """Commands that only look (doctor's), sent even while the log is lost."""
        token = _CHECKING.set(_CHECKING.get() | {id(self)})
        try:
            yield
        finally:
            _CHECKING.reset(token)

    def verify(self, *, resume: bool = False, expect_root: str | None = None,
               progress: Callable[[int], None] | None = None) -> VerifyReport:
        """As for every store; a lost log is a break of its own (kind `lost`), not a crash."""
        try:
            return super().verify(resume=resume, expect_root=expect_root, progress=progress)
        except LogLost as exc:
            return lost_report(exc)

    def _info(self) -> dict[str, Any]:
        server = self._call(lambda: self.client.info("server"))
        persistence = self._call(lambda: self.client.info("persistence"))
        memory = self._call(lambda: self.client.info("memory"))
        if self.cluster:  # one node's answer per section is enough for a summary
            server, persistence, memory = (first_node(server), first_node(persistence), first_node(memory))
        try:
            save = self._call(lambda: self.client.config_get("save"))
            policy = self._call(lambda: self.client.config_get("maxmemory-policy"))
        except EventLogError as exc:  # CONFIG may be disabled (managed Redis)
            if isinstance(exc, StoreUnavailable):
                raise
            save, policy = {}, {}
        if self.cluster:
            save, policy = first_node(save), first_node(policy)
        result: dict[str, Any] = {
            "url": self.url,
            "redis_version": server.get("redis_version"),
            "aof_enabled": bool(int(persistence.get("aof_enabled", 0))),
            "rdb_save": text(save.get("save", save.get(b"save", ""))),
            "maxmemory_policy": text(policy.get("maxmemory-policy", policy.get(b"maxmemory-policy", ""))),
            "used_memory": memory.get("used_memory"),
            "cluster": self.cluster,
            "partitions": self.partitions,
            "prefix": self.prefix,
        }
        if self.cluster:
            cluster_info = self._call(lambda: self.client.cluster_info())
            result["cluster_state"] = text(first_node(cluster_info).get("cluster_state", ""))
        return result

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):  # closing a broken connection must not raise
            self._release_held()
        with contextlib.suppress(Exception):
            self.client.close()


def _parse_head(raw: bytes | None) -> StreamHead:
    if not raw:
        return EMPTY_HEAD
    version, _, digest = raw.decode().partition(" ")
    return StreamHead(int(version), digest)


_LOST = (b"LOST", b"EVICTED", b"BEHIND")


def _nothing() -> None:
    return None
