"""Pages of XRANGE entries checked and taken apart at C speed (`map`, `set`, itemgetters).

A page of the Redis log whose entries are all this store's own (`[b"e", data]` under
`0-<position>`) is decoded without a Python step per entry; these helpers tell whether a
page is such a one and what its positions are.
"""

from __future__ import annotations

import collections
import itertools
import operator
from collections.abc import Iterator
from typing import Any

_first = operator.itemgetter(0)
_second = operator.itemgetter(1)
_id_prefix = operator.itemgetter(slice(0, 2))
_id_sequence = operator.itemgetter(slice(2, None))
_repeat = itertools.repeat


def _consume(iterator: Iterator[Any]) -> None:
    collections.deque(iterator, maxlen=0)


def _all_ours(fields: list[Any]) -> bool:
    """Whether every entry of a page is `[b"e", data]` as this store writes it (one C-level
    pass per property instead of a Python test per entry)."""
    return (set(map(type, fields)) == {list} and set(map(len, fields)) == {2}
            and set(map(_first, fields)) == {b"e"})


def _positions(entries: list[Any]) -> range | list[int] | None:
    """The positions of a page whose ids are all `0-<position>` (this store's ids); None if
    any is not. Ids rise along a stream, so when the first and last are `0-a` and `0-b` and
    the page holds b - a + 1 entries, its ids are exactly 0-a .. 0-b (the usual page: no
    entry deleted in between) and nothing per entry needs reading."""
    first, last = entries[0][0], entries[-1][0]
    if first[:2] == b"0-" and last[:2] == b"0-":
        try:
            a, b = int(first[2:]), int(last[2:])
        except ValueError:
            return None
        if b - a + 1 == len(entries):
            return range(a, b + 1)
    ids = list(map(_first, entries))
    if set(map(_id_prefix, ids)) != {b"0-"}:
        return None
    try:
        return list(map(int, map(_id_sequence, ids)))
    except ValueError:
        return None


def _data_of(fields: Any) -> bytes:
    """An entry's stored event: `[b"e", data]` as Redis sends it, or a dict (or flat list)
    from a client that parses replies (a Redis Cluster client, a client passed in); b"" when
    the entry has no `e` field (not ours: reported as a gap, like a missing entry)."""
    if type(fields) is list and len(fields) == 2 and fields[0] == b"e":
        data: bytes = fields[1]
        return data
    found = (fields if type(fields) is dict else dict(zip(fields[::2], fields[1::2]))).get(b"e")
    return found if isinstance(found, bytes) else b""
