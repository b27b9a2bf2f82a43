"""Run the synchronous store code on an event loop, awaiting its I/O instead of blocking.

The store, the read index and EventLogDb are synchronous code, and one copy of it serves
both EventLogDb and AsyncEventLogDb. To drive that code from a coroutine without a thread per
call, `run_bridged(fn)` runs `fn` in a greenlet whose parent is the coroutine's greenlet (the
technique SQLAlchemy's asyncio extension uses). Where the code reaches I/O, a bridge-aware
client calls `await_only(awaitable)`: the greenlet switches to its parent, which awaits the
awaitable on the loop like any coroutine and switches back with the result (or throws the
exception in). Between those points the sync code runs on the loop thread, exactly as
written, so sync and async callers share every line of logic, every read model and every
error path.

Locks held across such an await need care: other greenlets run on the same thread meanwhile,
so a `threading.Lock` would deadlock and an `RLock` would let them all in. `BridgeLock`
(`reentrant=True` for an RLock) takes, inside a bridge, first a per-loop asyncio lock
(greenlets queue there without blocking the loop) and then the thread lock (excluding other
threads); outside a bridge it is the thread lock. A synchronous, non-bridged caller on the
loop thread that finds the lock held by a suspended bridge greenlet cannot wait for it (the
holder needs the very loop that caller is blocking), so it gets a RuntimeError rather than
a silent deadlock or a second entry.

greenlet is imported when a bridge first runs: the core never needs it (the `os` extra
brings it).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

_greenlet: Any = None  # the greenlet module, once a bridge has run
_Bridge: Any = None  # the greenlet subclass marking a bridge


_loading = threading.Lock()


def _load() -> Any:
    global _greenlet, _Bridge
    if _Bridge is None:
        with _loading:  # (one class for every thread: `in_bridge` tests against it)
            if _Bridge is None:
                greenlet: Any = importlib.import_module("greenlet")  # (no type stubs)

                class Bridge(greenlet.greenlet):  # type: ignore[misc]
                    """A greenlet running bridged sync code; `loop` is the loop its awaits run on."""

                    loop: asyncio.AbstractEventLoop

                _greenlet, _Bridge = greenlet, Bridge
    return _Bridge


async def run_bridged(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run sync `fn(*args, **kwargs)` on this loop's thread; its `await_only` calls await
    here. Context variables are copied in (as `asyncio.to_thread` does)."""
    bridge = _load()(run=contextvars.copy_context().run, parent=_greenlet.getcurrent())
    bridge.loop = asyncio.get_running_loop()
    result: Any = bridge.switch(fn, *args, **kwargs)
    while not bridge.dead:  # it handed us an awaitable: await it and hand back the outcome
        try:
            value = await result
        except BaseException as exc:  # (CancelledError too: the sync code unwinds, locks released)
            result = bridge.throw(exc)
        else:
            result = bridge.switch(value)
    return result  # type: ignore[no-any-return]


def await_only(awaitable: Awaitable[T]) -> T:
    """Inside a bridge: await `awaitable` on the loop and return its result."""
    current = _greenlet.getcurrent() if _greenlet is not None else None
    if _Bridge is None or not isinstance(current, _Bridge):
        if asyncio.iscoroutine(awaitable):
            awaitable.close()  # (never awaited: no "was never awaited" warning on top)
        raise RuntimeError("await_only() called outside run_bridged()")
    return current.parent.switch(awaitable)  # type: ignore[no-any-return]


def in_bridge() -> bool:
    """Whether the caller runs inside `run_bridged` (cheap when no bridge ever ran)."""
    return _Bridge is not None and isinstance(_greenlet.getcurrent(), _Bridge)


def bridge_loop() -> asyncio.AbstractEventLoop | None:
    """The loop the current bridge awaits on (None outside a bridge)."""
    if _Bridge is None:
        return None
    current = _greenlet.getcurrent()
    return current.loop if isinstance(current, _Bridge) else None


class BridgeLock:
    """A thread lock that may be held across `await_only` (see the module docstring).
    Reentrant per greenlet in a bridge if `reentrant` (else re-entering raises); outside a
    bridge it is an `RLock` either way (so that a bridge can tell when the loop's own thread
    holds it)."""

    def __init__(self, reentrant: bool = False) -> None:
        self._reentrant = reentrant
        self._lock = threading.RLock()
        self._loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary())
        self._owner: Any = None  # the bridge greenlet holding it
        self._owner_thread = 0
        self._depth = 0

    def acquire(self) -> bool:
        loop = bridge_loop()
        if loop is None:
            if self._owner is not None and self._owner_thread == threading.get_ident():
                raise RuntimeError("a synchronous call on the event loop's thread needs a lock a suspended "
                                   "coroutine holds (it would deadlock): run it in a thread or through the "
                                   "async API")
            self._lock.acquire()
            return True
        current = _greenlet.getcurrent()
        if self._owner is current:
            if not self._reentrant:
                raise RuntimeError("BridgeLock is not reentrant")
            self._depth += 1
            return True
        queue = self._loop_locks.get(loop)
        if queue is None:
            queue = self._loop_locks[loop] = asyncio.Lock()
        await_only(queue.acquire())
        try:
            if self._lock._is_owned():  # type: ignore[attr-defined]
                # This thread holds it outside any bridge, across an await (a coroutine holding
                # the thread lock): entering would break exclusion, waiting would never end.
                raise RuntimeError("a coroutine holds this lock as a plain thread lock across an await")
            self._lock.acquire()  # other threads hold it only for sync work: never for long
        except BaseException:
            queue.release()
            raise
        self._owner, self._owner_thread, self._depth = current, threading.get_ident(), 1
        return True

    def release(self) -> None:
        loop = bridge_loop()
        if loop is None or self._owner is not _greenlet.getcurrent():
            self._lock.release()
            return
        self._depth -= 1
        if self._depth:
            return
        self._owner, self._owner_thread = None, 0
        self._lock.release()
        self._loop_locks[loop].release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_for(store: object, reentrant: bool = False) -> Any:
    """A lock its holders keep across `store`'s I/O: a `BridgeLock` if the store serves
    asyncio natively (`store.bridged`), else the plain thread lock, so that sync-only use
    costs what it always did."""
    if getattr(store, "bridged", False):
        return BridgeLock(reentrant)
    return threading.RLock() if reentrant else threading.Lock()


class _KeyLock:
    """One key's lock in a `KeyedLocks` (a class of our own so the registry can hold it weakly)."""

    __slots__ = ("__weakref__", "lock")

    def __init__(self, lock: Any) -> None:
        self.lock = lock

    def __enter__(self) -> bool:
        return bool(self.lock.acquire())

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


class KeyedLocks:
    """A reentrant lock per key (a session id, say), made by `lock_for(store)` on first use and
    dropped once nobody holds or waits for it: writers of different keys never queue behind
    one another, and the registry holds only the locks in use (not one per key ever seen).

    Why: a db-wide write lock held across an awaited append makes every concurrent writer on
    one event loop wait for the slowest's round trips (measured: AgentOS runs on the native
    Redis path spent most of their p99 queued there), though all a write needs excluded is
    another write of the same entity between its read-check and its append."""

    def __init__(self, store: object) -> None:
        self._store = store
        self._locks: weakref.WeakValueDictionary[str, _KeyLock] = weakref.WeakValueDictionary()
        self._guard = threading.Lock()

    def __call__(self, key: str) -> _KeyLock:
        with self._guard:
            held = self._locks.get(key)
            if held is None:
                held = self._locks[key] = _KeyLock(lock_for(self._store, reentrant=True))
            return held

    def __len__(self) -> int:
        return len(self._locks)


class Broadcast:
    """A generation number that callers wait to see move past a value they read: threads on a
    condition variable, coroutines in a bridge on a per-loop `asyncio.Event` (a wait there
    suspends only its own coroutine). `bump` wakes every waiter at once.

    Why not a lock's queue: a caller that only needs "someone else's fold has finished" would
    otherwise queue for the lock behind every other waiter and be handed it in turn, one event
    loop iteration per hand-off, each running other requests' work in between."""

    def __init__(self) -> None:
        self.generation = 0
        self._cond = threading.Condition(threading.Lock())
        self._events: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = (
            weakref.WeakKeyDictionary())

    def bump(self) -> None:
        with self._cond:
            self.generation += 1
            self._cond.notify_all()
            events, self._events = self._events, weakref.WeakKeyDictionary()
        here = bridge_loop()
        for loop, event in list(events.items()):
            if loop is here:
                event.set()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    def wait_past(self, generation: int, timeout: float) -> None:
        """Return once `generation` has moved past `generation` (or after `timeout` seconds)."""
        loop = bridge_loop()
        with self._cond:
            if loop is None:
                self._cond.wait_for(lambda: self.generation > generation, timeout)
                return
            if self.generation > generation:
                return
            event = self._events.get(loop)
            if event is None:
                event = self._events[loop] = asyncio.Event()
        with contextlib.suppress(asyncio.TimeoutError):
            await_only(asyncio.wait_for(event.wait(), timeout))
