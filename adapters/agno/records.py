"""EventLogDb's other tables: metrics, knowledge, evals, traces, spans, learnings, versions.

Every write is a `record.upserted` / `record.deleted` event (nothing Agno stores bypasses the
log). For reads we do not re-implement Agno's filters: the rows folded by the records read
model are handed to Agno's own InMemoryDb (metrics, knowledge, evals) or JsonDb (traces,
spans) logic through a private mirror, so results match those backends by construction.
"""

from __future__ import annotations

import copy
import time
from datetime import date, datetime, timezone
from typing import Any

from agno.db.in_memory import InMemoryDb
from agno.db.json import JsonDb
from agno.db.schemas.evals import EvalRunRecord
from agno.db.schemas.knowledge import KnowledgeRow
from agno.db.utils import metrics_starting_date_from_records

from adapters.agno.core import EventLogCore, actor_of
from adapters.agno.scoped import candidates, indexed, offset_of
from eventlog import Payload, RecordDeleted, RecordUpserted
from eventlog.names import record_stream
from projections.index.indexer import session_orderings
from projections.index.record_view import RecordTable
from projections.sessions import SessionRow

# table -> the column that identifies a row
KEYS = {
    "knowledge": "id",
    "evals": "run_id",
    "traces": "trace_id",
    "spans": "span_id",
    "schema_versions": "table_name",
}


def _metric_key(row: dict[str, Any]) -> str:
    return f"{row.get('user_id')}|{row.get('date')}|{row.get('aggregation_period')}"


class _RowsJsonDb(JsonDb):
    """Agno's JsonDb logic over rows we hand it; writes are captured, not written to disk."""

    def __init__(self) -> None:
        super().__init__(db_path="/nonexistent-eventlog-mirror", traces_table="traces", spans_table="spans")
        self.tables: dict[str, list[dict[str, Any]]] = {}
        self.written: dict[str, list[dict[str, Any]]] = {}

    def _read_json_file(self, filename: str, create_table_if_not_found: bool | None = True) -> list[dict[str, Any]]:
        return [dict(row) for row in self.tables.get(filename, [])]

    def _write_json_file(self, filename: str, data: list[dict[str, Any]]) -> None:
        self.written[filename] = data


class RecordMethods(EventLogCore):
    _mirror: InMemoryDb
    _json_mirror: _RowsJsonDb

    # --- shared ---------------------------------------------------------------------------

    @staticmethod
    def _table(states: dict[str, Any], table: str) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = states["records"].tables.get(table, {})
        return rows

    def _put(self, table: str, key: str, row: dict[str, Any]) -> None:
        self._emit(record_stream(table), [RecordUpserted(table=table, key=key, record=row)], actor_of(row))

    def _emit_changes(self, table: str, before: dict[str, dict[str, Any]], after: list[dict[str, Any]],
                      key_of: Any, *, deletes: bool = True) -> None:
        """Upsert rows that are new or changed, delete rows that disappeared (of `before`:
        the rows the caller handed Agno's code) — one batch."""
        payloads: list[Payload] = []
        seen = set()
        for row in after:
            key = str(key_of(row))
            seen.add(key)
            if before.get(key) != row:
                payloads.append(RecordUpserted(table=table, key=key, record=row))
        if deletes:
            payloads.extend(RecordDeleted(table=table, key=k) for k in before if k not in seen)
        if payloads:
            self._emit(record_stream(table), payloads, actor_of({}))

    def _memory_mirror(self, states: dict[str, Any], *, knowledge: list[dict[str, Any]] | None = None,
                       evals: list[dict[str, Any]] | None = None,
                       metrics: list[dict[str, Any]] | None = None) -> InMemoryDb:
        """Agno's InMemoryDb over the rows a call may need (a fresh one per call: concurrent
        readers never share its lists). A table not given is empty, except that called
        with none at all it holds every row of the three tables (the whole-table path)."""
        m = InMemoryDb()
        if knowledge is None and evals is None and metrics is None:
            knowledge = list(self._table(states, "knowledge").values())
            evals = list(self._table(states, "evals").values())
            metrics = list(self._table(states, "metrics").values())
        m._knowledge = [copy.deepcopy(r) for r in knowledge or ()]
        m._eval_runs = [copy.deepcopy(r) for r in evals or ()]
        m._metrics = [copy.deepcopy(r) for r in metrics or ()]
        return m

    # --- schema versions ------------------------------------------------------------------

    def table_exists(self, table_name: str) -> bool:
        return True  # an event log has no tables to create

    def get_latest_schema_version(self, table_name: str = "") -> str:
        with self._reading() as states:
            row = self._table(states, "schema_versions").get(table_name)
        return str(row["version"]) if row else "2.0.0"

    def upsert_schema_version(self, table_name: str = "", version: str = "") -> None:
        with self._write_lock:
            self._put("schema_versions", table_name, {"table_name": table_name, "version": version})

    # --- metrics --------------------------------------------------------------------------

    def calculate_metrics(self) -> list[dict[str, Any]] | None:
        """Agno's InMemoryDb calculation. Over the index it sees only what the calculation
        uses: the metric records from the latest completed day on (where Agno resumes) and
        the sessions created since the day it resumes at, not every session and record."""
        with self._write_lock:
            with self._reading() as states:
                table = indexed(self._table(states, "metrics"))
                if table is not None:
                    records, sessions = self._metrics_inputs(states, table)
                    m = self._memory_mirror(states, metrics=records)
                else:
                    m = self._memory_mirror(states)
                    sessions = states["sessions"].sessions.values()
                m._sessions = {row.session_id: self._row_dict(states, row)  # type: ignore[attr-defined]
                               for row in sessions}
                before = {_metric_key(r): copy.deepcopy(r) for r in m._metrics}
                results = m.calculate_metrics()
                after = list(m._metrics)
            self._emit_changes("metrics", before, after, _metric_key)
        return results

    @staticmethod
    def _metrics_inputs(states: Any, table: RecordTable) -> tuple[list[dict[str, Any]], list[SessionRow]]:
        """The records from the latest completed day on (walking days downwards: a completed
        record ends the walk after its day), and the sessions created from the day Agno will
        resume at (walking each session type's creation ordering downwards)."""
        found: list[tuple[int, dict[str, Any]]] = []
        completed: float | None = None
        for place, seq, row in table.walk("r|metrics|day", desc=True):
            if completed is not None and place.score < completed:
                break
            found.append((seq, row))
            if completed is None and row.get("completed"):
                completed = place.score
        found.sort(key=lambda t: t[0])  # table order, as InMemoryDb holds them
        records = [row for _, row in found]
        resume = metrics_starting_date_from_records(records)
        if resume is None:  # no records: Agno starts at the first session's day
            firsts = [states.index.page(o, desc=False, offset=0, limit=1)
                      for o in session_orderings(None, "all", "cre")]
            oldest = min((r[0].score for r in firsts if r), default=None)
            if oldest is None:
                return records, []
            resume = datetime.fromtimestamp(int(oldest), tz=timezone.utc).date()
        since = datetime.combine(resume, datetime.min.time()).replace(tzinfo=timezone.utc).timestamp()
        sessions: list[SessionRow] = []
        for ordering in session_orderings(None, "all", "cre"):
            for row in states.walk_sessions(ordering, desc=True):
                if row.created_at < since:
                    break
                sessions.append(row)
        return records, sessions

    def get_metrics(self, starting_date: date | None = None, ending_date: date | None = None,
                    user_id: str | None = None) -> tuple[list[dict[str, Any]], int | None]:
        """InMemoryDb's answer. Over the index: a user's records (their scope), or the records
        of the days asked for, found by walking the days downwards from the newest (so the
        recent days a dashboard asks for cost what they hold) — in table order either way."""
        with self._reading() as states:
            table = indexed(self._table(states, "metrics"))
            if table is None:
                return self._memory_mirror(states).get_metrics(starting_date, ending_date, user_id)
            if user_id is not None:
                rows = candidates(table, user_id=user_id)
            elif table.count("r|metrics|day") != table.count():  # a record with no day: InMemoryDb decides
                rows = list(table.values())
            else:
                found = []
                low = starting_date.toordinal() if starting_date is not None else None
                for place, seq, row in table.walk("r|metrics|day", desc=True):
                    if low is not None and place.score < low:
                        break
                    found.append((seq, row))
                rows = [row for _, row in sorted(found, key=lambda t: t[0])]
            return self._memory_mirror(states, metrics=rows).get_metrics(starting_date, ending_date, user_id)

    # --- knowledge ------------------------------------------------------------------------

    def upsert_knowledge_content(self, knowledge_row: KnowledgeRow) -> KnowledgeRow:
        row = knowledge_row.model_dump()
        with self._write_lock:
            with self._reading() as states:
                existing = self._table(states, "knowledge").get(str(knowledge_row.id))
            owner = knowledge_row.user_id
            if existing is not None and owner is not None and existing.get("user_id") != owner:
                raise ValueError(f"Knowledge content {knowledge_row.id} not found")
            self._put("knowledge", str(knowledge_row.id), row)
        return knowledge_row

    def delete_knowledge_content(self, id: str, user_id: str | None = None) -> None:
        with self._write_lock:
            with self._reading() as states:
                row = self._table(states, "knowledge").get(id)
            if row is not None and (user_id is None or row.get("user_id") == user_id):
                self._emit(record_stream("knowledge"), [RecordDeleted(table="knowledge", key=id)], actor_of(row))

    def get_knowledge_content(self, id: str, user_id: str | None = None) -> KnowledgeRow | None:
        with self._reading() as states:
            row = self._table(states, "knowledge").get(id)
            return self._memory_mirror(states, knowledge=[row] if row is not None else []).get_knowledge_content(
                id, user_id=user_id)

    def get_knowledge_contents(self, limit: int | None = None, page: int | None = None, sort_by: str | None = None,
                               sort_order: str | None = None, linked_to: str | None = None,
                               user_id: str | None = None) -> tuple[list[KnowledgeRow], int]:
        """InMemoryDb's answer. Over the index, a page with no filter is read from the sort's
        ordering at its offset; a filtered one from its scope: the instance's rows
        (`linked_to`), or a user's with the shared ones (`user_id`), whichever is smaller."""
        with self._reading() as states:
            rows = self._table(states, "knowledge")
            table = indexed(rows)
            if table is not None:
                if linked_to is None and user_id is None:
                    found = _sorted_page(table, limit, page, sort_by, sort_order, None)
                    if found is not None:
                        return [KnowledgeRow.model_validate(r) for r in found[0]], found[1]
                    subset = list(table.values())
                else:
                    scopes = [[table.scope("linked_to", linked_to)]] if linked_to is not None else []
                    if user_id is not None:
                        scopes.append([table.scope("user_id", user_id), table.scope("user_id", None)])
                    best = min(scopes, key=lambda names: sum(table.count(n) for n in names if n is not None))
                    subset = [row for _, _, row in table.union(best)]
            else:
                subset = list(rows.values())
            return self._memory_mirror(states, knowledge=subset).get_knowledge_contents(
                limit=limit, page=page, sort_by=sort_by, sort_order=sort_order, linked_to=linked_to, user_id=user_id)

    # --- evals ----------------------------------------------------------------------------

    def create_eval_run(self, eval_run: EvalRunRecord) -> EvalRunRecord | None:
        row = eval_run.model_dump()
        row["created_at"] = row["updated_at"] = int(time.time())
        with self._write_lock:
            self._put("evals", str(eval_run.run_id), row)
        return eval_run

    def delete_eval_runs(self, eval_run_ids: list[str], user_id: str | None = None) -> None:
        with self._write_lock:
            with self._reading() as states:
                rows = self._table(states, "evals")
                found = {k: rows.get(k) for k in dict.fromkeys(eval_run_ids)}
                gone = [k for k, r in found.items()
                        if r is not None and (user_id is None or r.get("user_id") == user_id)]
            if gone:
                self._emit(record_stream("evals"), [RecordDeleted(table="evals", key=k) for k in gone], actor_of({}))

    def get_eval_run(self, eval_run_id: str, deserialize: bool | None = True, user_id: str | None = None) -> Any:
        with self._reading() as states:
            row = self._table(states, "evals").get(eval_run_id)
            return self._memory_mirror(states, evals=[row] if row is not None else []).get_eval_run(
                eval_run_id, deserialize=deserialize, user_id=user_id)

    def get_eval_runs(self, limit: int | None = None, page: int | None = None, sort_by: str | None = None,
                      sort_order: str | None = None, agent_id: str | None = None, team_id: str | None = None,
                      workflow_id: str | None = None, model_id: str | None = None, filter_type: Any = None,
                      eval_type: Any = None, deserialize: bool | None = True, user_id: str | None = None) -> Any:
        """InMemoryDb's answer. Over the index a page with no filter is read from the sort's
        ordering at its offset (newest first by default); a filtered one from the narrowest
        scope its component, model or user names, or from the scopes of the eval types asked
        for when they hold fewer rows."""
        with self._reading() as states:
            rows = self._table(states, "evals")
            table = indexed(rows)
            plain = (agent_id is None and team_id is None and workflow_id is None and model_id is None
                     and user_id is None and filter_type is None and not eval_type)
            if table is not None and plain:
                found = _sorted_page(table, limit, page, sort_by, sort_order, "cre-")
                if found is not None:
                    if not deserialize:
                        return found
                    return [EvalRunRecord.model_validate(r) for r in found[0]]
            subset = _eval_candidates(rows, table, eval_type, agent_id=agent_id, team_id=team_id,
                                      workflow_id=workflow_id, model_id=model_id, user_id=user_id)
            return self._memory_mirror(states, evals=subset).get_eval_runs(
                limit=limit, page=page, sort_by=sort_by, sort_order=sort_order, agent_id=agent_id, team_id=team_id,
                workflow_id=workflow_id, model_id=model_id, filter_type=filter_type, eval_type=eval_type,
                deserialize=deserialize, user_id=user_id)

    def _update_eval(self, eval_run_id: str, user_id: str | None, changes: dict[str, Any]) -> dict[str, Any] | None:
        with self._write_lock:
            with self._reading() as states:
                row = self._table(states, "evals").get(eval_run_id)
            if row is None or (user_id is not None and row.get("user_id") != user_id):
                return None
            row = {**copy.deepcopy(row), **changes, "updated_at": int(time.time())}
            self._put("evals", eval_run_id, row)
            return row

    def rename_eval_run(self, eval_run_id: str, name: str, deserialize: bool | None = True,
                        user_id: str | None = None) -> Any:
        row = self._update_eval(eval_run_id, user_id, {"name": name})
        if row is None or not deserialize:
            return row
        return EvalRunRecord.model_validate(row)

    def update_eval_run_user_id(self, eval_run_id: str, user_id: str) -> None:
        self._update_eval(eval_run_id, None, {"user_id": user_id})

    # --- traces and spans: see adapters.agno.traces ----------------------------------------


def _sorted_page(table: RecordTable, limit: int | None, page: int | None, sort_by: str | None,
                 sort_order: str | None, unsorted: str | None) -> tuple[list[dict[str, Any]], int] | None:
    """A page of a whole table in InMemoryDb's order (`apply_sorting`; `unsorted`: the
    ordering used when no `sort_by` is given, None for table order), read from the
    ordering at the page's offset; None when no ordering holds that order exactly (a
    column without one, a value outside whole seconds, no limit: the caller sorts)."""
    if limit is None:
        return None
    if sort_by is None:
        ordering, desc = (f"r|{table.table}|{unsorted}", True) if unsorted else (f"r|{table.table}|seq", False)
        if unsorted and not table.exact(unsorted[:-1]):
            return None
    else:
        sort = _SORTS.get(sort_by)
        if sort is None or not table.exact(sort):
            return None
        desc = sort_order != "asc" if sort_order else True
        ordering = f"r|{table.table}|{sort}{'-' if desc else '+'}"
    return table.page(ordering, desc=desc, offset=offset_of(limit, page), limit=limit), table.count()


_SORTS = {"created_at": "cre", "updated_at": "upd"}


def _eval_candidates(rows: Any, table: RecordTable | None, eval_type: Any, **filters: Any) -> list[dict[str, Any]]:
    """The evals a query can match, in table order: the narrowest scope its equality filters
    name, or the union of the scopes of the eval types it lists (InMemoryDb keeps a row whose
    `eval_type` is in the list; a type is its text, an `EvalType` its value), whichever holds
    fewer rows."""
    types = [getattr(t, "value", t) for t in eval_type] if isinstance(eval_type, (list, tuple)) and eval_type else []
    if table is None or not types or not all(isinstance(t, str) for t in types):
        return candidates(rows, **filters)
    wanted = {k: v for k, v in filters.items() if v is not None}
    narrow = table.narrowest(wanted) if wanted else None
    scopes = [table.scope("eval_type", t) for t in dict.fromkeys(types)]
    if any(s is None for s in scopes) or (narrow is not None and table.count(narrow)
                                          <= sum(table.count(s) for s in scopes if s)):
        return candidates(rows, **filters)
    return [row for _, _, row in table.union(scopes)]
