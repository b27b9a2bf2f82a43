"""Connecting to Redis: a store URL to a redis-py client, and what its failures mean to us.

`client_from_url` takes our own options (prefix, partitions, ...) off the query string and
hands the rest to redis-py; `translate` turns redis-py's errors into the project's, with any
password redacted, so no caller ever sees a raw `redis.exceptions` error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import redis
from redis import exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from eventlog import codec
from eventlog.errors import EventLogError, InvalidURL, StoreRefused, StoreUnavailable
from eventlog.stores.redis_wire import _raw_reply
from eventlog.urls import redact_url

# Failures that mean "cannot reach it now" (the outcome of a write is then unknown).
UNAVAILABLE: tuple[type[BaseException], ...] = (
    rex.ConnectionError, rex.TimeoutError, rex.BusyLoadingError, rex.ClusterDownError, rex.MasterDownError,
    rex.TryAgainError, ConnectionError, OSError,
    asyncio.TimeoutError,  # (redis.asyncio; an OSError from Python 3.11, not on 3.10)
)


# Seconds a command (or a connect) may take before Redis counts as down: a frozen server
# (SIGSTOP, a stalled host) makes appends fall back and reads raise after this, not hang.
DEFAULT_TIMEOUT = 2.0


class Options(msgspec.Struct):
    """Our own options of a Redis store URL."""

    prefix: str = "el"
    partitions: int = 1
    max_event_bytes: int = codec.DEFAULT_MAX_EVENT_BYTES
    wait_replicas: int = 0
    timeout: float = DEFAULT_TIMEOUT


class Connection(NamedTuple):
    """What `client_from_url` makes of a URL. `async_client` makes a `redis.asyncio` client
    from the same URL and options (one per event loop: they are bound to the loop they
    first run on); it holds the URL, secrets included, in a closure and nowhere else."""

    client: Any
    options: Options
    cluster: bool
    partitions: int
    async_client: Callable[[], Any] | None = None


def client_from_url(url: str) -> Connection:
    """redis://, rediss:// (TLS), unix://, redis+cluster:// and rediss+cluster:// URLs."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    try:
        options = Options(
            prefix=query.pop("prefix", "el"),
            partitions=int(query.pop("partitions", "0") or 0),
            max_event_bytes=int(query.pop("max_event_bytes", codec.DEFAULT_MAX_EVENT_BYTES)),
            wait_replicas=int(query.pop("wait_replicas", "0") or 0),
            timeout=float(query.pop("timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT),
        )
    except ValueError as exc:
        raise InvalidURL(f"bad option in {redact_url(url)}: {exc}") from exc
    if not 0 < options.timeout <= 3600:
        raise InvalidURL(f"timeout must be a number of seconds in (0, 3600], got {options.timeout}")
    scheme = parts.scheme.lower()
    cluster = scheme.endswith("+cluster")
    base_scheme = scheme.replace("+cluster", "")
    clean = urlunsplit((base_scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
    common: dict[str, Any] = {"socket_connect_timeout": options.timeout, "socket_timeout": options.timeout,
                              "decode_responses": False}
    try:
        if cluster:
            client = _cluster_client(parts, base_scheme, query, common)
            partitions = options.partitions or 16
        else:
            # One quiet retry, on a broken connection only (a stale socket after a restart):
            # redis-py's default (10 retries with backoff, timeouts included) turned a frozen
            # server into a stall of half a minute per command.
            retry = Retry(NoBackoff(), 1, supported_errors=(rex.ConnectionError,))
            client = redis.Redis.from_url(clean, health_check_interval=30, retry=retry, **common)
            # Our own client: XRANGE pages come back as Redis sends them, not as a dict
            # per entry (building those was a third of the cost of reading the log back).
            client.set_response_callback("XRANGE", _raw_reply)
            partitions = options.partitions or 1
    except (ValueError, TypeError) as exc:
        raise InvalidURL(f"cannot use {redact_url(url)}: {exc}") from exc

    def async_client() -> Any:
        """The same client on redis.asyncio (imported only when asked for)."""
        if cluster:
            return _cluster_client(parts, base_scheme, query, common, asyncio_=True)
        from redis.asyncio import Redis as AsyncRedis
        from redis.asyncio.retry import Retry as AsyncRetry

        retry = AsyncRetry(NoBackoff(), 1, supported_errors=(rex.ConnectionError,))
        aclient = AsyncRedis.from_url(clean, health_check_interval=30, retry=retry, **common)
        aclient.set_response_callback("XRANGE", _raw_reply)
        return aclient

    return Connection(client, options, cluster, partitions, async_client)


def translate(exc: BaseException, url: str) -> BaseException | None:
    """The project's error for a redis-py failure (None: not one we translate)."""
    if isinstance(exc, rex.AuthenticationError):  # (a ConnectionError subclass: test it first)
        return StoreUnavailable(f"Redis at {url} refused the credentials: {redacted(str(exc))}")
    if isinstance(exc, UNAVAILABLE):
        return StoreUnavailable(f"Redis at {url} is unavailable: {type(exc).__name__}: {redacted(str(exc))}")
    if isinstance(exc, rex.ResponseError):
        message = redacted(str(exc))
        if "NOAUTH" in message or "WRONGPASS" in message or "NOPERM" in message:
            return StoreUnavailable(f"Redis at {url} refused the credentials")
        if isinstance(exc, rex.OutOfMemoryError):
            return StoreRefused(f"Redis at {url} is out of memory (OOM: maxmemory reached under noeviction), "
                                f"nothing was written: {message}")
        if isinstance(exc, rex.ReadOnlyError) or message.startswith(_REFUSALS):
            return StoreRefused(f"Redis at {url} refused the command, nothing was written: {message}")
        return EventLogError(f"Redis at {url} answered with an error: {message}")
    return None


# Error replies that mean "not now" (nothing done): out of memory under noeviction, a replica
# that cannot take writes, a failing disk, too few replicas, a busy script or module.
_REFUSALS = ("OOM", "READONLY", "MISCONF", "NOREPLICAS", "BUSY", "MASTERDOWN", "LOADING")


def redacted(message: str) -> str:
    """Connection errors may quote the URL; never let a password through."""
    return redact_url(message) if "://" in message else message


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def first_node(value: Any) -> dict[Any, Any]:
    """Cluster commands may answer per node ({node: reply}); take one node's reply."""
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return dict(next(iter(value.values())))
    return dict(value) if isinstance(value, dict) else {}


def _cluster_client(parts: Any, scheme: str, query: dict[str, str], common: dict[str, Any],
                    asyncio_: bool = False) -> Any:
    if asyncio_:
        from redis.asyncio.cluster import ClusterNode, RedisCluster
    else:
        from redis.cluster import ClusterNode, RedisCluster  # type: ignore[assignment]

    hosts = parts.netloc.rpartition("@")[2]
    nodes = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        nodes.append(ClusterNode(host or "127.0.0.1", int(port or 6379)))  # type: ignore[no-untyped-call,unused-ignore]
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
