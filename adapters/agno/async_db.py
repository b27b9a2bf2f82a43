"""`AsyncEventLogDb`: Agno's async database interface (`AsyncBaseDb`) over the event log.

    agent = Agent(model=..., db=AsyncEventLogDb("redis://localhost:6379/0"))
    await agent.arun("hello", user_id="u1")
    app = AgentOS(agents=[agent], db=agent.db).get_app()

It is an `EventLogDb` driven from coroutines: every coroutine method runs the EventLogDb
method of the same name, so the events, streams, read models and answers are EventLogDb's —
the same log can be served by both at once, and `.sync` is the EventLogDb inside. How it does
its I/O depends on the store (`.io` says which):

- `"redis.asyncio"` — a Redis log (`redis://`, `rediss://`, `unix://`, `redis+cluster://`):
  each call runs on the event loop's own thread, in a greenlet bridge
  (`eventlog.aio_bridge.run_bridged`), and every Redis command it sends is awaited on a
  `redis.asyncio` client made from the same URL (one per event loop). No thread, no executor:
  while one call waits for Redis, the loop runs the others. The locks EventLogDb and the
  store hold across I/O are `BridgeLock`s, which queue coroutines on the loop without blocking
  it. The same store still serves sync callers on the sync client.
- `"threads"` — the file and memory stores, the Redis-with-file-fallback store (`REDIS_URL`:
  its fallback writes files, its health thread shares its locks) and the encrypted store: each
  call runs in a small thread pool of this db's own (`workers`), so a `stat`/`pread`/`fsync` or
  a fold never blocks the loop and concurrent requests overlap.

The method list is generated from Agno's own classes (every coroutine of `AsyncBaseDb`, and
every other public method of `BaseDb` as Agno calls it: synchronously), and
tests/test_agentos.py checks that none is missing. Agno calls those sync ones (components,
configs, compactions, MCP OAuth, bulk upserts) from its coroutines, on the loop's thread; in
`"redis.asyncio"` mode such a call cannot wait for a lock a suspended coroutine holds (the
holder needs the loop the call is blocking), so calls made on a thread running an event loop go
to a second EventLogDb on the same log with its own connections and locks — what another
worker process would be — opened on first use.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import functools
import inspect
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agno.db.base import AsyncBaseDb, BaseDb

from adapters.agno.core import _take_cache_mb
from adapters.agno.db import EventLogDb
from eventlog import EventStore, open_store, redact_url
from eventlog.aio_bridge import BridgeLock, in_bridge, run_bridged
from projections.timetravel import Point

# Not delegated by the generator: defined below, or BaseDb/AsyncBaseDb plumbing.
_OWN = frozenset({"to_dict", "from_dict", "close"})


def _public(cls: type) -> dict[str, Any]:
    return {n: v for n, v in inspect.getmembers(cls) if not n.startswith("_") and callable(v)}


def _awaitable(name: str) -> Callable[..., Any]:
    @functools.wraps(getattr(EventLogDb, name))
    async def method(self: AsyncEventLogDb, *args: Any, **kwargs: Any) -> Any:
        return await self._call(getattr(self.sync, name), *args, **kwargs)

    return method


def _direct(name: str) -> Callable[..., Any]:
    @functools.wraps(getattr(EventLogDb, name))
    def method(self: AsyncEventLogDb, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._sync_here(), name)(*args, **kwargs)

    return method


class AsyncEventLogDb(AsyncBaseDb):
    """An Agno `AsyncBaseDb` over the event log (see the module docstring)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        store: EventStore | None = None,
        db: EventLogDb | None = None,
        id: str | None = None,
        snapshots: bool = True,
        at: Point | str | None = None,
        workers: int = 8,
        io: str | None = None,
    ) -> None:
        """`url`, `store`, `id`, `snapshots`, `at` as for EventLogDb; or an EventLogDb `db` to
        share (then both serve the same read models; natively on Redis only if its store
        already does, see `enable_asyncio`). `workers`: threads running db calls on stores
        served by threads (each call holds one while it reads or writes). `io`: None picks
        by store (see the module docstring); "threads" forces the pool (a comparison, or a
        way back); "redis.asyncio" insists (ValueError if the store cannot)."""
        if io not in (None, "threads", "redis.asyncio"):
            raise ValueError(f'io must be None, "threads" or "redis.asyncio", got {io!r}')
        if db is None:
            owned = store is None
            cache_mb = None
            if store is None:
                plain, cache_mb = _take_cache_mb(url)
                store = open_store(plain)
            enable = getattr(store, "enable_asyncio", None)  # a Redis store (not wrapped)
            native = enable() if enable is not None and io != "threads" else False
            if io == "redis.asyncio" and not native:
                if owned:
                    store.close()
                raise _cannot(store)
            try:
                db = EventLogDb(store=store, id=id, snapshots=snapshots, at=at, cache_mb=cache_mb)
            except BaseException:
                if owned:
                    store.close()
                raise
            db._owns_store = owned  # (opened here for it: it closes the store as if it had)
        self.sync = db
        super().__init__(id=id or self.sync.id)
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None
        # Natively only where no plain thread lock is held across I/O: the shared read index,
        # or a view of the past (folded once, read from memory). An EventLogDb folding the
        # log into this process (shared_index=False) catches up under the runner's lock.
        # (And only if its locks were made for the bridge: an EventLogDb built before its store
        # was bridged holds thread locks.)
        indexer = self.sync.indexer
        self._native = (io != "threads" and bool(getattr(self.sync.store, "bridged", False))
                        and (indexer is not None or self.sync.point is not None)
                        and isinstance(self.sync._write_lock, BridgeLock)
                        and (indexer is None or isinstance(indexer._lock, BridgeLock)))
        if io == "redis.asyncio" and not self._native:
            raise _cannot(self.sync.store)
        self._side: EventLogDb | None = None  # for sync calls made on the loop's thread (native)
        self._side_lock = threading.Lock()

    @property
    def io(self) -> str:
        """How calls do their I/O: "redis.asyncio" (on the loop, awaited) or "threads"."""
        return "redis.asyncio" if self._native else "threads"

    @property
    def store(self) -> EventStore:
        return self.sync.store

    @property
    def read_only(self) -> bool:
        return self.sync.read_only

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn` bridged on the loop (native) or in the pool, with the caller's context
        variables (as `asyncio.to_thread`)."""
        if self._native:
            return await run_bridged(fn, *args, **kwargs)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="eventlog-db")
        context = contextvars.copy_context()
        call = functools.partial(context.run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def _sync_here(self) -> EventLogDb:
        """The EventLogDb for a sync call from here: `.sync`, except on a thread running an
        event loop in native mode (see the module docstring), where it is the side db."""
        if not self._native or in_bridge():
            return self.sync
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self.sync  # another thread: it may wait for the locks like any thread
        with self._side_lock:  # (loops on two threads: one side db)
            if self._side is None:
                store = self.sync.store.reopen()  # type: ignore[attr-defined]
                side = EventLogDb(store=store, id=self.id, snapshots=False, at=self.sync.point,
                                  cache_mb=self.sync.cache_mb)
                side._owns_store = True
                self._side = side
            return self._side

    # --- EventLogDb's own API, async -------------------------------------------------------

    def as_of(self, point: Point | str) -> AsyncEventLogDb:
        """A read-only AsyncEventLogDb showing the state just after `point` (see EventLogDb)."""
        return AsyncEventLogDb(db=self.sync.as_of(point), workers=self._workers,
                               io=None if self._native else "threads")

    async def fork_session(self, session_id: str, at: Point | str | None = None,
                           new_session_id: str | None = None) -> str:
        result: str = await self._call(self.sync.fork_session, session_id, at, new_session_id)
        return result

    async def forget_user(self, user_id: str, reason: str | None = None) -> None:
        await self._call(self.sync.forget_user, user_id, reason)

    async def save_snapshots(self) -> None:
        await self._call(self.sync.save_snapshots)

    async def close(self) -> None:
        """Close the EventLogDb inside (snapshots, store) and stop the pool. Idempotent."""
        await self._call(self.sync.close)
        side, self._side = self._side, None
        if side is not None:
            side.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.update({"type": "eventlog-async", "url": redact_url(self.sync.store.url)})
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AsyncEventLogDb:
        """Rebuild from `to_dict()`, as EventLogDb.from_dict does: the same id and store (a
        URL whose password `to_dict` redacted comes from the environment instead)."""
        url = data.get("url")
        if not isinstance(url, str) or "***" in url:
            url = None
        return cls(url, id=data.get("id"))

    def __repr__(self) -> str:
        return f"Async{self.sync!r}"


def _cannot(store: EventStore) -> ValueError:
    return ValueError(f"{redact_url(store.url)} cannot be served on redis.asyncio (a Redis store opened from a "
                      "URL can; the fallback and encrypted stores use threads)")


def delegated_methods() -> dict[str, str]:
    """name -> "async" or "sync": how AsyncEventLogDb exposes each method of Agno's db
    interfaces — a coroutine where AsyncBaseDb declares one, else a plain call (Agno calls
    BaseDb-only methods such as `upsert_compaction` synchronously even on an async db)."""
    kinds: dict[str, str] = {}
    for name in {**_public(BaseDb), **_public(AsyncBaseDb)}:
        if name in _OWN:
            continue
        declared = getattr(AsyncBaseDb, name, None)
        kinds[name] = "async" if declared is not None and inspect.iscoroutinefunction(declared) else "sync"
    return kinds


for _name, _kind in delegated_methods().items():
    setattr(AsyncEventLogDb, _name, _awaitable(_name) if _kind == "async" else _direct(_name))
abc.update_abstractmethods(AsyncEventLogDb)
