"""EventLogDb's traces and spans: Agno's JsonDb logic over the rows a call can touch.

JsonDb answers by filtering and sorting whole lists; handed only the rows a query can match
(in table order) it gives the same answer, so that is what it is handed. Over the shared
index (`projections.index.tables`) those are: for `upsert_trace` the one trace it merges
into (with tracing on every agent run writes one, so a run's cost no longer follows the
number of traces ever stored); for a page of traces with no filter, the page read from the
start-time ordering at its offset, and with one component, session or user filter the page
of that scope's start-time ordering; with other filters the narrowest scope named (a run,
session, user, agent, team or workflow, also taken from the top-level `AND`/`EQ` of a
`filter_expr`, as AgentOS scopes a non-admin caller) walked and filtered, or the start-time
ordering walked down to a day before `start_time`; spans by their trace (or parent) and by
id. In the process (memory, encrypted, fallback stores, `as_of`) every row is handed over as
before. Trace statistics group every trace a filter's scope holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from adapters.agno.core import actor_of
from adapters.agno.filters import trace_filter
from adapters.agno.records import KEYS, RecordMethods, _RowsJsonDb
from adapters.agno.scoped import indexed, rows_between
from eventlog import RecordUpserted
from eventlog.names import record_stream
from projections.index.indexer import decode_tstat
from projections.index.record_view import RecordTable
from projections.index.tables import EXACT_SORTS, scope_text

Row = dict[str, Any]
_SCOPES = ("run_id", "session_id", "user_id", "agent_id", "team_id", "workflow_id", "status")
_MARGIN_US = 86_400 * 1_000_000  # a day: JsonDb compares ISO text, the ordering instants


def _equalities(expr: dict[str, Any] | None) -> dict[str, Any]:
    """Column values a filter expression requires of every row it keeps: its own `EQ`, or
    those of the conditions of a top-level `AND` (malformed ones are left to the filter,
    which raises)."""
    if not isinstance(expr, dict):
        return {}
    if expr.get("op") == "EQ" and isinstance(expr.get("key"), str) and isinstance(expr.get("value"), str):
        return {expr["key"]: expr["value"]}
    out: dict[str, Any] = {}
    if expr.get("op") == "AND" and isinstance(expr.get("conditions"), list):
        for condition in expr["conditions"]:
            for key, value in _equalities(condition).items():
                out.setdefault(key, value)
    return out


class TraceMethods(RecordMethods):
    """Traces and spans (mixed into `EventLogDb` before `RecordMethods`)."""

    def _json_call(self, rows: dict[str, list[Row]], method: str, *args: Any,
                   traces_kept: Callable[[Row], bool] | None = None, **kwargs: Any) -> Any:
        """Run Agno's JsonDb `method` over `rows` (table -> rows in table order; with
        `traces_kept`, only the traces it keeps) and append what it wrote: the rows it
        changed, added, or dropped of those it was handed."""
        mirror = _RowsJsonDb()
        mirror.tables = {t: [r for r in found if traces_kept is None or t != "traces" or traces_kept(r)]
                         for t, found in rows.items()}
        result = getattr(mirror, method)(*args, **kwargs)
        for table, written in mirror.written.items():
            before = {str(r.get(KEYS[table])): r for r in rows.get(table, [])}
            self._emit_changes(table, before, written, lambda r, t=table: r.get(KEYS[t]))
        return result

    def _spans_of(self, spans: Mapping[str, Row], trace_ids: list[Any]) -> list[Row]:
        table = indexed(spans)
        if table is None:
            return list(spans.values())
        return [row for _, _, row in table.union(table.scope("trace_id", t) for t in dict.fromkeys(trace_ids))]

    def upsert_trace(self, trace: Any) -> None:
        """JsonDb's merge, handed the one stored trace of that id (if any)."""
        with self._write_lock:
            with self._reading() as states:
                traces = self._table(states, "traces")
                if indexed(traces) is not None:
                    existing = traces.get(str(trace.trace_id))
                    rows = [existing] if existing is not None else []
                else:
                    rows = list(traces.values())
            self._json_call({"traces": rows}, "upsert_trace", trace)

    def get_trace(self, trace_id: str | None = None, run_id: str | None = None) -> Any:
        with self._reading() as states:
            traces, spans = self._table(states, "traces"), self._table(states, "spans")
            table = indexed(traces)
            if table is None:
                rows = list(traces.values())
            else:
                found = table.with_seq([trace_id]) if trace_id else []
                if run_id:
                    found += table.rows_of(table.scope("run_id", run_id))
                rows = [row for _, _, row in sorted({k: (s, k, r) for s, k, r in found}.values())]
            span_rows = self._spans_of(spans, [r.get("trace_id") for r in rows])
        return self._json_call({"traces": rows, "spans": span_rows}, "get_trace", trace_id=trace_id, run_id=run_id)

    def get_traces(self, run_id: str | None = None, session_id: str | None = None, user_id: str | None = None,
                   agent_id: str | None = None, team_id: str | None = None, workflow_id: str | None = None,
                   status: str | None = None, start_time: datetime | None = None, end_time: datetime | None = None,
                   limit: int | None = 20, page: int | None = 1,
                   filter_expr: dict[str, Any] | None = None) -> tuple[list[Any], int]:
        """`filter_expr` (an `agno.filters` expression as a dict; AgentOS ANDs the caller's user
        into it) is evaluated as the SQL databases do (see adapters.agno.filters)."""
        kept = trace_filter(filter_expr)
        params = {"run_id": run_id, "session_id": session_id, "user_id": user_id, "agent_id": agent_id,
                  "team_id": team_id, "workflow_id": workflow_id}
        kwargs = dict(params, status=status, start_time=start_time, end_time=end_time)
        with self._reading() as states:
            traces, spans = self._table(states, "traces"), self._table(states, "spans")
            table = indexed(traces)
            if table is None:
                rows = list(traces.values())
            else:
                page_rows = self._trace_page(table, params, status, start_time, end_time, limit, page, filter_expr)
                if page_rows is not None:  # the page itself, and every trace the query matches counted
                    rows, total = page_rows
                    span_rows = self._spans_of(spans, [r.get("trace_id") for r in rows])
                    found, _ = self._json_call({"traces": rows, "spans": span_rows}, "get_traces", limit=None)
                    return found, total
                rows = self._trace_candidates(table, dict(params, status=status), start_time, filter_expr)
            # JsonDb picks the page; then it is asked again with the page's spans only
            listed, total = self._json_call({"traces": rows}, "get_traces", traces_kept=kept, limit=limit,
                                            page=page, **kwargs)
            wanted = {t.trace_id for t in listed}
            rows = [r for r in rows if r.get("trace_id") in wanted]
            span_rows = self._spans_of(spans, list(wanted))
        found, _ = self._json_call({"traces": rows, "spans": span_rows}, "get_traces", limit=None, **kwargs)
        return found, total

    @staticmethod
    def _trace_page(table: RecordTable, params: dict[str, Any], status: Any, start_time: Any, end_time: Any,
                    limit: int | None, page: int | None,
                    filter_expr: dict[str, Any] | None) -> tuple[list[Row], int] | None:
        """The page read straight from a start-time ordering, when the query is all traces or
        one scope's (a session's, a user's, ...) and nothing else; else None."""
        if not (limit and page) or start_time or end_time:
            return None
        given = {k: v for k, v in params.items() if v}
        if status:  # (a status is a scope too: AgentOS's trace list filters by it)
            given["status"] = status
        if filter_expr is not None:
            if set(filter_expr) != {"op", "key", "value"} or filter_expr.get("op") != "EQ":
                return None
            extra = _equalities(filter_expr)
            if not extra or any(k not in _SCOPES or not v or given.get(k, v) != v for k, v in extra.items()):
                return None
            given.update(extra)
        if len(given) > 1:
            return None
        if given:
            ((column, value),) = given.items()
            ordering, everything = table.scope(column, value, "st"), table.scope(column, value)
            if ordering is None or everything is None:
                return None
        else:
            ordering, everything = "r|traces|st", "r|traces|seq"
        total = table.count(everything)
        if table.count(ordering) != total:  # a trace without a start instant: JsonDb's sort decides
            return None
        offset = (page - 1) * limit
        start = max(0, offset - 1)  # (one neighbour each side: ties across the page's edges)
        window = table.index.page(ordering, desc=True, offset=start, limit=offset - start + limit + 1)
        edge = offset - start
        before, inside, after = window[:edge], window[edge:edge + limit], window[edge + limit:]
        if inside and ((before and before[0].score == inside[0].score)
                       or (after and after[0].score == inside[-1].score)):
            return None  # a tie to the microsecond across an edge: JsonDb's stable sort decides
        score = {r.key: r.score for r in inside}
        found = sorted(table.with_seq(list(score)), key=lambda t: (-score[t[1]], t[0]))  # ties: table order
        return [row for _, _, row in found], total

    @staticmethod
    def _trace_candidates(table: RecordTable, params: dict[str, Any], start_time: datetime | None,
                          filter_expr: dict[str, Any] | None) -> list[Row]:
        """Every trace the query can match, in table order (JsonDb filters them exactly)."""
        wanted = {k: v for k, v in params.items() if v}
        for key, value in _equalities(filter_expr).items():
            if key in _SCOPES:
                wanted.setdefault(key, value)
        ordering = table.narrowest(wanted)
        if ordering is not None:
            return [row for _, _, row in table.rows_of(ordering)]
        low = EXACT_SORTS["st"]({"start_time": start_time}) if start_time is not None else None
        if low is None or table.count("r|traces|st") != table.count():
            return list(table.values())
        found = []
        for place, seq, row in table.walk("r|traces|st", desc=True):
            if place.score < low - _MARGIN_US:
                break
            found.append((seq, row))
        return [row for _, row in sorted(found, key=lambda t: t[0])]

    def get_trace_stats(self, user_id: str | None = None, agent_id: str | None = None, team_id: str | None = None,
                        workflow_id: str | None = None, start_time: datetime | None = None,
                        end_time: datetime | None = None, limit: int | None = 20, page: int | None = 1,
                        filter_expr: dict[str, Any] | None = None,
                        group_by: Any = "session") -> tuple[list[dict[str, Any]], int]:
        """Stats over the traces `filter_expr` keeps (see `get_traces`). Over the index, with
        no filter, a page of the per-session statistics the index keeps (ordered by the last
        trace's time); with filters, JsonDb's grouping of the narrowest scope they name
        (without one, of the traces created in the time range given — read from the creation
        ordering — else of every trace)."""
        kept = trace_filter(filter_expr)
        with self._reading() as states:
            traces = self._table(states, "traces")
            table = indexed(traces)
            if (table is not None and group_by == "session" and limit and page and filter_expr is None
                    and not (user_id or agent_id or team_id or workflow_id or start_time or end_time)):
                found = _stats_page(table, limit, page)
                if found is not None:
                    return found
            params = {"user_id": user_id, "agent_id": agent_id, "team_id": team_id, "workflow_id": workflow_id}
            ranged = (_created_between(table, start_time, end_time)
                      if table is not None and not _scopes_named(params, filter_expr) else None)
            if ranged is not None:
                rows = ranged
            else:
                rows = (self._trace_candidates(table, params, None, filter_expr) if table is not None
                        else list(traces.values()))
        result: tuple[list[dict[str, Any]], int] = self._json_call(
            {"traces": rows}, "get_trace_stats", user_id=user_id, agent_id=agent_id, team_id=team_id,
            workflow_id=workflow_id, start_time=start_time, end_time=end_time, limit=limit, page=page,
            group_by=group_by, traces_kept=kept)
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
        with self._reading() as states:
            spans = self._table(states, "spans")
            if indexed(spans) is not None:
                row = spans.get(span_id)
                rows = [row] if row is not None else []
            else:
                rows = list(spans.values())
        return self._json_call({"spans": rows}, "get_span", span_id)

    def get_spans(self, trace_id: str | None = None, parent_span_id: str | None = None,
                  limit: int | None = 1000) -> list[Any]:
        """JsonDb's answer (table order, the first `limit`): a trace's or a parent's spans from
        their scope; with neither, the first `limit` of the table."""
        with self._reading() as states:
            spans = self._table(states, "spans")
            table = indexed(spans)
            if table is None:
                rows = list(spans.values())
            else:
                ordering = table.narrowest({k: v for k, v in (("trace_id", trace_id),
                                                              ("parent_span_id", parent_span_id)) if v})
                if ordering is not None:
                    rows = [row for _, _, row in table.rows_of(ordering)]
                elif trace_id or parent_span_id:
                    rows = list(table.values())
                else:
                    rows = table.page("r|spans|seq", desc=False, offset=0, limit=limit or None)
        result: list[Any] = self._json_call({"spans": rows}, "get_spans", trace_id=trace_id,
                                            parent_span_id=parent_span_id, limit=limit)
        return result


def _scopes_named(params: dict[str, Any], filter_expr: dict[str, Any] | None) -> bool:
    return any(params.values()) or any(k in _SCOPES for k in _equalities(filter_expr))


def _created_between(table: RecordTable, start_time: Any, end_time: Any) -> list[Row] | None:
    """Every trace JsonDb's `created_at` range can keep, in table order, from the creation
    ordering (`cat`: the wall clock of each trace's ISO text, see `wall_us`): the range
    widened by a second each way, as such texts more than a second apart compare as their
    wall clocks. None (every trace, then) without a range, or while a trace's creation time
    is not such a text."""
    if not (start_time or end_time) or table.count("r|traces|cat") != table.count():
        return None
    return rows_between(table, "r|traces|cat", start_time, end_time)


def _stats_page(table: RecordTable, limit: int, page: int) -> tuple[list[dict[str, Any]], int] | None:
    """A page of JsonDb's per-session trace statistics, newest last trace first, from the
    index's `ts|last` ordering (ties in the order the sessions first appeared, one neighbour
    read each side as for a page of traces); None (JsonDb decides) while any session's times
    cannot be ordered or a tie crosses the page's edge."""
    index = table.index
    if index.count("ts|odd"):
        return None
    offset = (page - 1) * limit
    start = max(0, offset - 1)
    window = index.page("ts|last", desc=True, offset=start, limit=offset - start + limit + 1)
    edge = offset - start
    before, inside, after = window[:edge], window[edge:edge + limit], window[edge + limit:]
    if inside and ((before and before[0].score == inside[0].score) or (after and after[0].score == inside[-1].score)):
        return None
    keys = [r.key for r in inside]
    score = {r.key: r.score for r in inside}
    found = [decode_tstat(d) for d in index.get_many("tstat", keys, table._home) if d is not None]
    found.sort(key=lambda f: (-score[str(scope_text(f[1]["session_id"]))], f[0]))
    out = []
    for _, stats, _ in found:
        stat = dict(stats)
        for column in ("first_trace_at", "last_trace_at"):
            if stat[column]:
                stat[column] = datetime.fromisoformat(stat[column].replace("Z", "+00:00"))
        out.append(stat)
    return out, index.count("ts|last")
