"""`AsyncEventLogDb`: Agno's async database interface (`AsyncBaseDb`) over the event log.

    agent = Agent(model=..., db=AsyncEventLogDb("redis://localhost:6379/0"))
    await agent.arun("hello", user_id="u1")
    app = AgentOS(agents=[agent], db=agent.db).get_app()

It is an `EventLogDb` driven from a small thread pool of its own: every coroutine method runs
the EventLogDb method of the same name off the event loop, so a read that catches the read
models up (a file `stat` and `pread`, a Redis round trip) or a write that appends never blocks
the loop, and concurrent requests overlap their I/O. The events, streams, read models and
answers are EventLogDb's — the same log can be served by both at once, and `.sync` is the
EventLogDb inside. The method list is generated from Agno's own classes (every coroutine of
`AsyncBaseDb`, and every other public method of `BaseDb` as Agno calls it: synchronously), and
tests/test_agentos.py checks that none is missing.

Why a thread pool and not `redis.asyncio`: the read models, the write lock and the delta
computation are shared with EventLogDb and are CPU work under a lock; only the store's I/O
could be awaited natively, and for a single Redis round trip per call the thread hop costs
about as much as it saves (see benchmarks/agentos.py). A native async Redis path is a later
optimisation.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agno.db.base import AsyncBaseDb, BaseDb

from adapters.agno.db import EventLogDb
from eventlog import EventStore, redact_url
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
        return getattr(self.sync, name)(*args, **kwargs)

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
    ) -> None:
        """`url`, `store`, `id`, `snapshots`, `at` as for EventLogDb; or an EventLogDb `db` to
        share (then both serve the same read models). `workers`: threads running db calls
        (each call holds one while it reads or writes; writes take EventLogDb's write lock)."""
        self.sync = db if db is not None else EventLogDb(url, store=store, id=id, snapshots=snapshots, at=at)
        super().__init__(id=id or self.sync.id)
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None

    @property
    def store(self) -> EventStore:
        return self.sync.store

    @property
    def read_only(self) -> bool:
        return self.sync.read_only

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `fn` in the pool, with the caller's context variables (as `asyncio.to_thread`)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="eventlog-db")
        context = contextvars.copy_context()
        call = functools.partial(context.run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    # --- EventLogDb's own API, async -------------------------------------------------------

    def as_of(self, point: Point | str) -> AsyncEventLogDb:
        """A read-only AsyncEventLogDb showing the state just after `point` (see EventLogDb)."""
        return AsyncEventLogDb(db=self.sync.as_of(point), workers=self._workers)

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
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.update({"type": "eventlog-async", "url": redact_url(self.sync.store.url)})
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AsyncEventLogDb:
        """Rebuild from `to_dict()` (see EventLogDb.from_dict)."""
        return cls(db=EventLogDb.from_dict(data))

    def __repr__(self) -> str:
        return f"Async{self.sync!r}"


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
