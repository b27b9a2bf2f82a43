"""One of Agno's other tables as a reader sees it over the index: `RecordTable`.

It is the mapping the in-process read model offers (key -> row, iterated in table order),
so every adapter method keeps working on it, but a lookup by key reads one row, and the
queries the table's orderings answer (`projections.index.tables`) read only what they ask
for: the rows of a scope in table order, a page of a sort from its offset, a sort walked a
chunk at a time until the reader stops.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from eventlog.names import record_stream
from projections.index.base import Ranked, ReadIndex
from projections.index.indexer import decode_record, decode_record_seq
from projections.index.tables import TABLES, scope_ordering
from projections.index.views import RowMap

Row = dict[str, Any]


class RecordTable(RowMap[Row]):
    """A record table over the index (see the module docstring). Rows are decoded afresh on
    every read, so callers own what they get."""

    def __init__(self, index: ReadIndex, table: str) -> None:
        # (a table's rows live in its stream's partition: on a Cluster a lookup asks that one)
        partition_of = getattr(index, "partition_of", None)
        self._home: int | None = partition_of(record_stream(table)) if partition_of is not None else None
        super().__init__(index, f"rec:{table}", decode_record, f"r|{table}|seq", lambda key: self._home)
        self.index = index
        self.table = table
        self.spec = TABLES.get(table)

    def scope(self, column: str, value: Any, sort: str = "seq") -> str | None:
        """The ordering of the rows whose `column` is `value` (None: the table has no such
        scope, or the value is not one an ordering is keyed by)."""
        if self.spec is None or column not in self.spec.scopes:
            return None
        if value is None and column not in self.spec.nulls:
            return None
        if sort != "seq" and column not in self.spec.scoped_sorts:
            return None
        return scope_ordering(self.table, column, value, sort)

    def narrowest(self, filters: dict[str, Any]) -> str | None:
        """Of the scopes `filters` name (column -> wanted value), the one holding the fewest
        rows; None if they name none (the reader then walks the table)."""
        names = [n for n in (self.scope(c, v) for c, v in filters.items()) if n is not None]
        if not names:
            return None
        return min(names, key=self.index.count)

    def count(self, ordering: str | None = None) -> int:
        return self.index.count(ordering or f"r|{self.table}|seq")

    def exact(self, sort: str) -> bool:
        """Whether a sort's order is the table's rule for every row (no value outside whole
        seconds, see `projections.index.tables`)."""
        return self.index.count(f"r|{self.table}|{sort}|odd") == 0

    def rows_of(self, ordering: str | None) -> list[tuple[int, str, Row]]:
        """(insertion number, key, row) of every row of a seq ordering (None: the table), in
        table order."""
        keys = [r.key for r in self.index.page(ordering or f"r|{self.table}|seq", desc=False, offset=0, limit=None)]
        return self.with_seq(keys)

    def union(self, orderings: Iterable[str | None]) -> list[tuple[int, str, Row]]:
        """The rows of several seq orderings, each once, in table order."""
        keys: dict[str, None] = {}
        for ordering in orderings:  # (every ordering's keys first, then their rows in one read)
            keys.update((r.key, None) for r in self.index.page(ordering or f"r|{self.table}|seq", desc=False,
                                                                offset=0, limit=None))
        return sorted(self.with_seq(list(keys)), key=lambda t: t[0])

    def with_seq(self, keys: list[str]) -> list[tuple[int, str, Row]]:
        out = []
        for key, data in zip(keys, self.index.get_many(self._kind, keys, self._home)):
            if data is not None:
                seq, row = decode_record_seq(data)
                out.append((seq, key, row))
        return out

    def page(self, ordering: str, *, desc: bool, offset: int, limit: int | None) -> list[Row]:
        """The rows of one page of an ordering, in its order."""
        keys = [r.key for r in self.index.page(ordering, desc=desc, offset=offset, limit=limit)]
        return [row for _, _, row in self.with_seq(keys)]

    def walk(self, ordering: str, *, desc: bool, chunk: int = 200) -> Iterator[tuple[Ranked, int, Row]]:
        """(place, insertion number, row) along an ordering, read a chunk at a time: a reader
        that stops early (a time range left behind) has read only what it passed."""
        at = 0
        while True:
            ranked = self.index.page(ordering, desc=desc, offset=at, limit=chunk)
            rows = {key: (seq, row) for seq, key, row in self.with_seq([r.key for r in ranked])}
            for r in ranked:
                found = rows.get(r.key)
                if found is not None:
                    yield r, found[0], found[1]
            if len(ranked) < chunk:
                return
            at += chunk
