"""Why a value cannot be stored as JSON, said with the path to the bad part.

The encoder's own errors say only what (`Only dicts with str-like or number-like keys are
supported`, `RecursionError`), not where. `find_unstorable` walks the value — only after an
encode failed, so the hot path never pays for it — and names the first dict key JSON cannot
hold, the first cycle, or nesting too deep to encode, in msgspec's path style
(`$.set.user[2]`), so the caller gets an `InvalidEvent` that points at the field.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from eventlog.errors import InvalidEvent

T = TypeVar("T")

MAX_DEPTH = 500  # deeper than this is refused (the encoders would recurse out of stack)

_OK_KEYS = (str, int, float, bytes)


def find_unstorable(value: Any, path: str = "$") -> str | None:
    """The first reason `value` cannot be stored as JSON, with its path; None if the dict
    keys, the nesting and the shape (no cycles) are fine. (Other unencodable values — a
    datetime, an object — are for the encoder to report.)"""
    on_path: set[int] = set()  # containers between the root and the current one
    stack: list[tuple[Any, str, int, bool]] = [(value, path, 0, False)]
    while stack:
        item, where, depth, leaving = stack.pop()
        if leaving:
            on_path.discard(id(item))
            continue
        children = _children(item, where)
        if children is None:
            continue
        if id(item) in on_path:
            return f"{where} contains itself (a cycle: JSON cannot hold it)"
        if depth >= MAX_DEPTH:
            return f"{where} is nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, dict):
            for key in item:
                if not _storable_key(key):
                    return (f"{where} has a key JSON cannot hold: {key!r} ({type(key).__name__}; "
                            "keys must be strings or numbers)")
        on_path.add(id(item))
        stack.append((item, where, depth, True))
        for child, child_path in reversed(children):
            stack.append((child, child_path, depth + 1, False))
    return None


def _storable_key(key: Any) -> bool:
    if isinstance(key, enum.Enum):
        key = key.value
    return isinstance(key, _OK_KEYS) and not isinstance(key, bool)


def _children(item: Any, where: str) -> list[tuple[Any, str]] | None:
    """What `item` holds, with paths; None for a leaf."""
    if isinstance(item, dict):
        return [(v, f"{where}.{k}" if isinstance(k, str) else f"{where}[{k!r}]") for k, v in item.items()]
    if isinstance(item, (list, tuple, set, frozenset)):
        return [(v, f"{where}[{i}]") for i, v in enumerate(item)]
    if isinstance(item, msgspec.Struct):
        return [(getattr(item, f), f"{where}.{f}") for f in item.__struct_fields__]
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return [(getattr(item, f.name), f"{where}.{f.name}") for f in dataclasses.fields(item)]
    return None


def check_storable(value: Any, where: str) -> None:
    """Raise `InvalidEvent` naming the bad part if `value` cannot be stored as JSON (see
    `find_unstorable`). For input checks before anything is written; it walks the value."""
    problem = find_unstorable(value, where)
    if problem is not None:
        raise InvalidEvent(problem)


def to_plain(convert: Callable[[], T], value: Any, where: str) -> T:
    """`convert()` (an object's `to_dict`), with a cycle or too deep a nesting in `value`
    reported as `InvalidEvent` naming where, instead of a `RecursionError` from deep inside."""
    try:
        return convert()
    except RecursionError:
        problem = find_unstorable(value, where) or f"{where} is nested too deeply to store"
        raise InvalidEvent(problem) from None
