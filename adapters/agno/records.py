"""EventLogDb's other tables: metrics, knowledge, evals, traces, spans, learnings, versions.

Every write is a `record.upserted` / `record.deleted` event (nothing Agno stores bypasses the
log). For reads we do not re-implement Agno's filters: the rows folded by the records read
model are handed to Agno's own InMemoryDb (metrics, knowledge, evals) or JsonDb (traces,
spans) logic through a private mirror, so results match those backends by construction.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from agno.db.in_memory import InMemoryDb
from agno.db.json import JsonDb
from agno.db.schemas.evals import EvalRunRecord
from agno.db.schemas.knowledge import KnowledgeRow

from adapters.agno.core import EventLogCore, actor_of
from adapters.agno.filters import trace_filter
from eventlog import Payload, RecordDeleted, RecordUpserted
from eventlog.names import record_stream

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
                      key_of: Any) -> None:
        """Upsert rows that are new or changed, delete rows that disappeared — one batch."""
        payloads: list[Payload] = []
        seen = set()
        for row in after:
            key = str(key_of(row))
            seen.add(key)
            if before.get(key) != row:
                payloads.append(RecordUpserted(table=table, key=key, record=row))
        payloads.extend(RecordDeleted(table=table, key=k) for k in before if k not in seen)
        if payloads:
            self._emit(record_stream(table), payloads, actor_of({}))

    def _memory_mirror(self, states: dict[str, Any]) -> InMemoryDb:
        m = self._mirror
        m._knowledge = [copy.deepcopy(r) for r in self._table(states, "knowledge").values()]
        m._eval_runs = [copy.deepcopy(r) for r in self._table(states, "evals").values()]
        m._metrics = [copy.deepcopy(r) for r in self._table(states, "metrics").values()]
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
        with self._write_lock:
            with self._reading() as states:
                m = self._memory_mirror(states)
                m._sessions = {sid: self._row_dict(states, row)  # type: ignore[attr-defined]
                               for sid, row in states["sessions"].sessions.items()}
                before = {k: copy.deepcopy(v) for k, v in self._table(states, "metrics").items()}
                results = m.calculate_metrics()
                after = list(m._metrics)
                m._sessions = {}
            self._emit_changes("metrics", before, after, _metric_key)
        return results

    def get_metrics(self, starting_date: date | None = None, ending_date: date | None = None,
                    user_id: str | None = None) -> tuple[list[dict[str, Any]], int | None]:
        with self._reading() as states:
            return self._memory_mirror(states).get_metrics(starting_date, ending_date, user_id)

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
            return self._memory_mirror(states).get_knowledge_content(id, user_id=user_id)

    def get_knowledge_contents(self, limit: int | None = None, page: int | None = None, sort_by: str | None = None,
                               sort_order: str | None = None, linked_to: str | None = None,
                               user_id: str | None = None) -> tuple[list[KnowledgeRow], int]:
        with self._reading() as states:
            return self._memory_mirror(states).get_knowledge_contents(
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
                gone = [k for k in eval_run_ids if k in rows and (user_id is None or rows[k].get("user_id") == user_id)]
            if gone:
                self._emit(record_stream("evals"), [RecordDeleted(table="evals", key=k) for k in gone], actor_of({}))

    def get_eval_run(self, eval_run_id: str, deserialize: bool | None = True, user_id: str | None = None) -> Any:
        with self._reading() as states:
            return self._memory_mirror(states).get_eval_run(eval_run_id, deserialize=deserialize, user_id=user_id)

    def get_eval_runs(self, limit: int | None = None, page: int | None = None, sort_by: str | None = None,
                      sort_order: str | None = None, agent_id: str | None = None, team_id: str | None = None,
                      workflow_id: str | None = None, model_id: str | None = None, filter_type: Any = None,
                      eval_type: Any = None, deserialize: bool | None = True, user_id: str | None = None) -> Any:
        with self._reading() as states:
            return self._memory_mirror(states).get_eval_runs(
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

    # --- traces and spans (Agno's JsonDb logic over folded rows) -------------------------

    def _json_call(self, tables: tuple[str, ...], method: str, *args: Any,
                   traces_kept: Callable[[dict[str, Any]], bool] | None = None, **kwargs: Any) -> Any:
        """Run Agno's JsonDb `method` over the folded rows of `tables` (with `traces_kept`,
        only the traces it keeps are visible: a filter expression JsonDb cannot evaluate)."""
        with self._write_lock:
            with self._reading() as states:
                mirror = self._json_mirror
                mirror.tables = {t: [r for r in self._table(states, t).values()
                                     if traces_kept is None or t != "traces" or traces_kept(r)] for t in tables}
                before = {t: dict(self._table(states, t)) for t in tables}
                mirror.written = {}
                result = getattr(mirror, method)(*args, **kwargs)
                written = mirror.written
            for table, rows in written.items():
                self._emit_changes(table, before[table], rows, lambda r, t=table: r.get(KEYS[t]))
        return result

    def upsert_trace(self, trace: Any) -> None:
        self._json_call(("traces",), "upsert_trace", trace)

    def get_trace(self, trace_id: str | None = None, run_id: str | None = None) -> Any:
        return self._json_call(("traces", "spans"), "get_trace", trace_id=trace_id, run_id=run_id)

    def get_traces(self, run_id: str | None = None, session_id: str | None = None, user_id: str | None = None,
                   agent_id: str | None = None, team_id: str | None = None, workflow_id: str | None = None,
                   status: str | None = None, start_time: datetime | None = None, end_time: datetime | None = None,
                   limit: int | None = 20, page: int | None = 1,
                   filter_expr: dict[str, Any] | None = None) -> tuple[list[Any], int]:
        """`filter_expr` (an `agno.filters` expression as a dict; AgentOS ANDs the caller's user
        into it) is evaluated as the SQL databases do (see adapters.agno.filters)."""
        result: tuple[list[Any], int] = self._json_call(
            ("traces", "spans"), "get_traces", run_id=run_id, session_id=session_id, user_id=user_id,
            agent_id=agent_id, team_id=team_id, workflow_id=workflow_id, status=status, start_time=start_time,
            end_time=end_time, limit=limit, page=page, traces_kept=trace_filter(filter_expr))
        return result

    def get_trace_stats(self, user_id: str | None = None, agent_id: str | None = None, team_id: str | None = None,
                        workflow_id: str | None = None, start_time: datetime | None = None,
                        end_time: datetime | None = None, limit: int | None = 20, page: int | None = 1,
                        filter_expr: dict[str, Any] | None = None,
                        group_by: Any = "session") -> tuple[list[dict[str, Any]], int]:
        """Stats over the traces `filter_expr` keeps (see `get_traces`)."""
        result: tuple[list[dict[str, Any]], int] = self._json_call(
            ("traces",), "get_trace_stats", user_id=user_id, agent_id=agent_id, team_id=team_id,
            workflow_id=workflow_id, start_time=start_time, end_time=end_time, limit=limit, page=page,
            group_by=group_by, traces_kept=trace_filter(filter_expr))
        return result

    def create_span(self, span: Any) -> None:
        with self._write_lock:
            row = span.to_dict()
            self._put("spans", str(row.get("span_id")), row)

    def create_spans(self, spans: list[Any]) -> None:
        if not spans:
            return
        rows = [s.to_dict() for s in spans]
        with self._write_lock:
            self._emit(record_stream("spans"),
                       [RecordUpserted(table="spans", key=str(r.get("span_id")), record=r) for r in rows],
                       actor_of({}))

    def get_span(self, span_id: str) -> Any:
        return self._json_call(("spans",), "get_span", span_id)

    def get_spans(self, trace_id: str | None = None, parent_span_id: str | None = None,
                  limit: int | None = 1000) -> list[Any]:
        result: list[Any] = self._json_call(("spans",), "get_spans", trace_id=trace_id,
                                            parent_span_id=parent_span_id, limit=limit)
        return result
