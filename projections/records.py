"""Generic records: the latest version of each row of any other table, by table and key.

Agno stores more than sessions and memories (metrics, knowledge, evals, traces, spans,
learnings, ...). Each of those writes is a `record.upserted` / `record.deleted` event, and
this fold keeps the current rows, so nothing Agno stores bypasses the log.
"""

from __future__ import annotations

from typing import Any

import msgspec

from eventlog import Event, RecordDeleted, RecordUpserted
from projections.fold import Projection


class RecordsState(msgspec.Struct):
    tables: dict[str, dict[str, dict[str, Any]]] = {}  # table -> key -> row (insertion-ordered)


class RecordsProjection(Projection[RecordsState]):
    name = "records"
    schema = 1
    state_type = RecordsState
    lazy_runs = True  # reads no run bodies
    handles = (RecordUpserted, RecordDeleted)

    def initial(self) -> RecordsState:
        return RecordsState({})

    def apply(self, state: RecordsState, event: Event) -> RecordsState:
        p = event.payload
        if isinstance(p, RecordUpserted):
            state.tables.setdefault(p.table, {})[p.key] = p.record
        elif isinstance(p, RecordDeleted):
            rows = state.tables.get(p.table)
            if rows is not None:
                rows.pop(p.key, None)
        return state

    @staticmethod
    def rows(state: RecordsState, table: str) -> dict[str, dict[str, Any]]:
        return state.tables.get(table, {})
