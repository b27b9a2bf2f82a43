"""Reading only the rows a query can match, on either read path.

Over the shared index a record table is a `RecordTable` whose scopes hold the rows with one
column value (`projections.index.tables`); in the process (memory, encrypted, fallback
stores, `as_of` views) it is the read model's dict. `candidates` gives, in table order, the
rows of the narrowest scope a query's equality filters name — a superset of the matches, so
callers still apply every filter exactly, with the code they used over the whole table — or
the whole table where no scope applies or there is no index. Answers cannot differ between
the two paths; only what is read does.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from projections.index.record_view import RecordTable
from projections.index.tables import wall_us

Row = dict[str, Any]


def indexed(rows: Mapping[str, Row]) -> RecordTable | None:
    return rows if isinstance(rows, RecordTable) else None


def candidates(rows: Mapping[str, Row], **filters: Any) -> list[Row]:
    """Rows that may match every filter given (None values are no filter), in table order."""
    table = indexed(rows)
    wanted = {k: v for k, v in filters.items() if v is not None}
    if table is not None and wanted:
        ordering = table.narrowest(wanted)
        if ordering is not None:
            return [row for _, _, row in table.rows_of(ordering)]
    return list(rows.values())


def keyed_candidates(rows: Mapping[str, Row], **filters: Any) -> list[tuple[str, Row]]:
    """As `candidates`, with each row's key."""
    table = indexed(rows)
    wanted = {k: v for k, v in filters.items() if v is not None}
    if table is not None and wanted:
        ordering = table.narrowest(wanted)
        if ordering is not None:
            return [(key, row) for _, key, row in table.rows_of(ordering)]
    return list(rows.items())


def offset_of(limit: int | None, page: int | None) -> int:
    return (page - 1) * limit if limit is not None and page is not None else 0


_SECOND_US = 1_000_000
_FAR = float(1 << 62)


def rows_between(table: RecordTable, ordering: str, start_time: Any, end_time: Any) -> list[Row] | None:
    """The rows of `ordering` (scored by the wall clock, in µs, of an ISO time text: see
    `projections.index.tables.wall_us`) inside [start_time, end_time] widened by a second each
    way, in table order: a superset of what a range filter on those texts keeps, as such texts
    more than a second apart compare as their wall clocks. None when a bound is not a datetime
    the ordering can place (the caller reads the whole table then)."""
    bounds = []
    for when, margin, far in ((start_time, -_SECOND_US, -_FAR), (end_time, _SECOND_US, _FAR)):
        if not when:
            bounds.append(far)
            continue
        at = wall_us(when.isoformat()) if isinstance(when, datetime) else None
        if at is None:
            return None
        bounds.append(at + margin)
    ranked = table.index.between(ordering, bounds[0], bounds[1], desc=False, offset=0, limit=None)
    return [row for _, _, row in sorted(table.with_seq([r.key for r in ranked]), key=lambda t: t[0])]
