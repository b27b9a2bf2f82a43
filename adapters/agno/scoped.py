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
from typing import Any

from projections.index.record_view import RecordTable

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
