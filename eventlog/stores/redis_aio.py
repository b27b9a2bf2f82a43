"""`BridgedRedis`: the Redis store's client, sending commands on `redis.asyncio` in a bridge.

It offers what the store and the read index use of `redis.Redis` / `RedisCluster` (every
command by name, `register_script`, `scan_iter`, `connection_pool`, `close`). Inside
`run_bridged` (see `eventlog.aio_bridge`) a command is `await_only(async_client.cmd(...))`
on a redis.asyncio client made from the same URL and options (AUTH, TLS, db, timeouts, the
raw XRANGE replies); outside a bridge it is the plain sync client's command, so a store
shared with sync callers (Agno's sync methods, the CLI, another thread) keeps working
unchanged, held-connection appends included.

redis.asyncio clients are bound to the event loop they first ran on, so there is one per
running loop (`asyncio.run` twice gets two), dropped with its loop. Errors are redis-py's
own exception classes on both paths, so the store's `translate` maps them the same.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from redis import exceptions as rex

from eventlog.aio_bridge import await_only, bridge_loop


class BridgedRedis:
    """See the module docstring. `sync` is the plain client; `make_async` builds a
    redis.asyncio client for the running loop (it holds the URL: this object never does)."""

    def __init__(self, sync: Any, make_async: Callable[[], Any]) -> None:
        self.sync = sync
        self._make_async = make_async
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    @property
    def connection_pool(self) -> Any:
        return self.sync.connection_pool  # (the held-connection path: sync callers only)

    def async_client(self, loop: asyncio.AbstractEventLoop) -> Any:
        """The redis.asyncio client of `loop` (made on first use)."""
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self._make_async()
        return client

    def __getattr__(self, name: str) -> Any:
        """A command by name: built once per name, then found as a plain attribute."""
        if name.startswith("_"):
            raise AttributeError(name)
        plain = getattr(self.sync, name)
        if not callable(plain):
            return plain

        def command(*args: Any, **kwargs: Any) -> Any:
            loop = bridge_loop()
            if loop is None:
                return plain(*args, **kwargs)
            result = getattr(self.async_client(loop), name)(*args, **kwargs)
            return await_only(result) if inspect.isawaitable(result) else result

        command.__name__ = name
        setattr(self, name, command)
        return command

    def single_connection(self) -> OneConnection:
        """In a bridge: commands on one connection of this loop's pool until `close()`."""
        loop = bridge_loop()
        if loop is None:
            raise RuntimeError("single_connection() is for bridged callers")
        return OneConnection(self.async_client(loop).client())

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        """The sync client's pipeline outside a bridge; in one, this loop's asyncio pipeline,
        its commands queued as they come and `execute()` awaited."""
        loop = bridge_loop()
        if loop is None:
            return self.sync.pipeline(transaction=transaction, shard_hint=shard_hint)
        return BridgedPipeline(self.async_client(loop).pipeline(transaction=transaction, shard_hint=shard_hint))

    def register_script(self, script: str) -> BridgedScript:
        return BridgedScript(self, script)

    def scan_iter(self, match: str | None = None, count: int | None = None) -> Iterator[Any]:
        if bridge_loop() is None:
            yield from self.sync.scan_iter(match=match, count=count)
            return
        cursor: Any = "0"
        while True:
            cursor, keys = self.scan(cursor, match=match, count=count)
            yield from keys
            if int(cursor) == 0:
                return

    def close(self) -> None:
        """Close the sync client and, in a bridge, this loop's async client (the other loops'
        clients go with their loops)."""
        try:
            self.sync.close()
        finally:
            loop = bridge_loop()
            client = self._clients.pop(loop, None) if loop is not None else None
            if client is not None:
                await_only(client.aclose())


class BridgedPipeline:
    """A redis.asyncio pipeline for bridged callers: queuing a command is a plain call (it
    returns the pipeline, as the sync one does), `execute()` is awaited."""

    def __init__(self, pipe: Any) -> None:
        self._pipe = pipe

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(self._pipe, name)

        def queue(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            return self if result is self._pipe else result

        return queue

    def execute(self, raise_on_error: bool = True) -> Any:
        return await_only(self._pipe.execute(raise_on_error=raise_on_error))

    def reset(self) -> None:
        result = self._pipe.reset()
        if inspect.isawaitable(result):
            await_only(result)

    def __enter__(self) -> BridgedPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reset()


class OneConnection:
    """A redis.asyncio client bound to one connection (`Redis.client()`), awaited in a bridge."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(self._client, name)
        return lambda *args, **kwargs: await_only(method(*args, **kwargs))

    def close(self) -> None:
        await_only(self._client.aclose())  # (gives the connection back to the pool)


class BridgedScript:
    """`register_script`'s object: EVALSHA on whichever path the caller is on, loading the
    script on NOSCRIPT (a restarted or flushed server) and running it once more."""

    def __init__(self, client: BridgedRedis, script: str) -> None:
        self.client = client
        self.script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()

    def __call__(self, keys: Any = (), args: Any = (), client: Any = None) -> Any:
        keys, args = list(keys), list(args)
        try:
            return self.client.evalsha(self.sha, len(keys), *keys, *args)
        except rex.NoScriptError:
            self.sha = self.client.script_load(self.script)
            return self.client.evalsha(self.sha, len(keys), *keys, *args)
