"""A projection is a fold: an initial state and `apply(state, event) -> state`.

The same `apply` serves the live runner and a time-travel query. A full rebuild folds the log
in batches through `fold`, which is `apply` in a loop unless a projection writes its own (the
hot read models do, tested against applying one by one). For speed `apply` may update the
state it is given and return it; it must depend on nothing but (state, event), so folding the
same events into a fresh `initial()` always gives the same state. Events a projection does not handle (including
payload types this version does not know) return the state untouched.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import ClassVar, Generic, TypeVar

import msgspec

from eventlog import Event

S = TypeVar("S")


class Projection(ABC, Generic[S]):
    """One read model. `name` keys its snapshots; bump `schema` whenever the state's shape or
    the meaning of `apply` changes, so old snapshots are discarded instead of trusted."""

    name: ClassVar[str]
    schema: ClassVar[int] = 1
    state_type: ClassVar[type]
    # The payload types `apply` acts on (None: all). Only an optimisation: the runner skips
    # calling `apply` for other types, which `apply` would return untouched anyway.
    handles: ClassVar[tuple[type, ...] | None] = None
    # True when `apply`/`fold` also accept a `run.recorded` event whose run is still its
    # stored JSON (`eventlog.lazy_runs.LazyRunRecorded`). A runner whose projections all
    # say so asks the store for runs left undecoded (`read_batches_for_fold(lazy_runs=True)`).
    lazy_runs: ClassVar[bool] = False

    @abstractmethod
    def initial(self) -> S: ...

    @abstractmethod
    def apply(self, state: S, event: Event) -> S: ...

    def fold(self, events: Iterable[Event], state: S | None = None) -> S:
        """Apply `events` in order to `state` (a fresh initial state when None).

        A projection may override this with one loop of its own (a rebuild folds the log
        batch by batch through it); it must give exactly what applying one by one gives.
        Such a loop is written for its own class's `apply`: it checks `applies_as` and falls
        back to this one for a subclass that overrides `apply`."""
        current = self.initial() if state is None else state
        apply = self.apply
        for event in events:
            current = apply(current, event)
        return current

    def applies_as(self, cls: type) -> bool:
        """Whether this projection's `apply` is the one `cls` defines (not a subclass's)."""
        return _defining(type(self), "apply") is cls

    def takes_lazy_runs(self) -> bool:
        """`lazy_runs` as promised by the class that defines `apply` or one below it: a
        subclass that overrides `apply` does not inherit its parent's promise about runs."""
        cls = type(self)
        return self.lazy_runs and issubclass(_defining(cls, "lazy_runs"), _defining(cls, "apply"))

    def encode_state(self, state: S) -> bytes:
        return msgspec.msgpack.encode(state)

    def decode_state(self, data: bytes) -> S:
        result: S = msgspec.msgpack.decode(data, type=self.state_type)
        return result


@functools.cache  # (asked once per batch and projection: the answer never changes)
def _defining(cls: type, name: str) -> type:
    """The class of `cls`'s MRO whose own body defines `name`."""
    return next(c for c in cls.__mro__ if name in vars(c))


_last_epoch: tuple[datetime | None, int] = (None, 0)


def epoch(at: datetime) -> int:
    """Whole seconds since the epoch, the unit Agno's rows use for created_at/updated_at.

    `datetime.timestamp()` costs ~0.2 µs, and the runner hands the same event (the same `at`
    object) to several projections in a row, so the last answer is remembered by identity.
    The memo holds a reference to its datetime, so `is` can never match a different one; it
    is one tuple swapped atomically, so threads folding at once cannot see a torn pair."""
    global _last_epoch
    last = _last_epoch
    if last[0] is at:
        return last[1]
    try:
        since = at - _EPOCH  # C-level arithmetic: ~0.1 µs cheaper than `timestamp()`
    except TypeError:  # a naive datetime: as `timestamp()` reads it (local time)
        value = int(at.timestamp())
    else:
        # == int(at.timestamp()) for times after 1970 (int() truncates toward zero, floor
        # division does not: before 1970 take the slow, exact path)
        value = since.days * 86400 + since.seconds if since.days >= 0 else int(at.timestamp())
    _last_epoch = (at, value)
    return value


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
EPOCH = _EPOCH  # for folds that inline `epoch` in their loop (a call costs as much as the sum)


def epoch_now() -> int:
    return int(datetime.now(timezone.utc).timestamp())


def epoch_of(value: object, default: int) -> int:
    """Seconds since the epoch from an int, float or ISO string (Agno writes all three);
    `default` when the value is missing or unreadable, so a fold never fails on it."""
    if isinstance(value, bool) or value is None:
        return default
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return default
        return int(parsed.timestamp())
    return default
