"""Helpers every command shares: user errors, parsing times and points, finding the layer of a
store that has a capability (a fallback, a file), and the progress bar.

A `UserError` is a mistake in what was asked; `app.main` prints it as one line with a hint and
exits 2, so commands raise it instead of printing and returning codes themselves.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from adapters.cli.output import Output
from eventlog import EventStore
from eventlog.names import session_stream
from projections.timetravel import Point, parse_point

T = TypeVar("T")

_TIME_LIKE = re.compile(r"^\d{4}-\d{1,2}(-\d{1,2})?([T ].*)?$")  # never a UUID (8 hex digits first)

Advance = Callable[..., None]
"""`advance(done, total=None)`: report progress (a no-op when stderr is not a terminal)."""


class UserError(Exception):
    """A mistake in what the user asked: printed as one line with a hint, exit code 2."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time (date alone, `Z` or an offset); naive times are UTC."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"bad time {text!r}", "use ISO 8601, e.g. 2026-11-24T20:00:00Z or 2026-11-24") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def point(text: str) -> Point:
    """A point in the log from user text: event id, position (N or P:N,...) or ISO time.

    Text that looks like a time but is not one (`2026-13-45`) is a bad time, not an event id."""
    value = parse_point(text)
    if isinstance(value, str) and _TIME_LIKE.match(value):
        parse_time(value)  # raises a UserError with the ISO hint
    return value


def require_session(store: EventStore, session_id: str) -> None:
    """Fail early and clearly (exit 2) on a session id the log has never seen."""
    if store.head(session_stream(session_id)).version == 0:
        raise UserError(f"unknown session {session_id!r}", "list sessions with: eventlog sessions")


def layers(store: EventStore) -> Iterator[EventStore]:
    """The store and every store it wraps (encryption's inner, a fallback's primary and
    secondary), outermost first: capabilities such as `info()` live on an inner layer."""
    seen: list[EventStore] = [store]
    while seen:
        current = seen.pop(0)
        yield current
        for name in ("inner", "primary", "secondary"):
            inner = getattr(current, name, None)
            if isinstance(inner, EventStore):
                seen.append(inner)


def find_layer(store: EventStore, kind: type[T]) -> T | None:
    """The outermost layer of `store` that is a `kind`, if any."""
    for layer in layers(store):
        if isinstance(layer, kind):
            return layer
    return None


@contextmanager
def progress_bar(out: Output, label: str, total: int | None = None) -> Iterator[Advance]:
    """A transient progress bar on stderr when stderr is a terminal; a no-op otherwise, so
    pipes and logs never see control characters."""
    if not sys.stderr.isatty():
        yield lambda done, total=None: None
        return
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=out.err, transient=True) as bar:
        task = bar.add_task(label, total=total)

        def advance(done: int, total: int | None = None) -> None:
            if total is not None:
                bar.update(task, completed=done, total=total)
            else:
                bar.update(task, completed=done)

        yield advance
