"""EventLogDb's run-side extras: compactions, tool results, transcripts, owner transfer, run
cancellation and span statistics — the rest of what agent runs and AgentOS call, with
SqliteDb's results.

Compaction records (what a context fold archived), tool-result index rows (offloaded tool
output) and external-agent transcripts are rows of the generic records read model (tables
`compactions`, `tool_results`, `transcripts`); every write is a `record.upserted` /
`record.deleted` event authored by the user and session the row belongs to, so audit, time
travel and `forget_user` cover them. Deleting a session deletes its transcripts, compactions
and tool-result rows too, as SqliteDb's cascade does (the conversation is in them verbatim).
Owner transfer and run cancellation are ordinary session and run events, checked and written
under the db's write lock.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from adapters.agno.core import actor_of
from adapters.agno.records import RecordMethods
from adapters.agno.scoped import candidates, indexed, keyed_candidates, rows_between
from eventlog import Payload, RecordDeleted, RecordUpserted, SessionFieldsChanged
from eventlog.names import record_stream, session_stream
from projections.index.indexer import decode_sstat
from projections.index.record_view import RecordTable
from projections.index.tables import column_value

COMPACTION_COLUMNS = ("compaction_id", "session_id", "run_id", "user_id", "first_kept_message_id", "summary",
                      "archived_messages", "messages_compacted", "tokens_before", "tokens_after", "created_at")
TOOL_RESULT_COLUMNS = ("result_id", "namespace", "path", "session_id", "run_id", "tool_call_id", "tool_name",
                       "args_hash", "content_type", "size_bytes", "line_count", "preview", "user_id", "created_at",
                       "expires_at")
_ACTIVE = ("PENDING", "RUNNING", "PAUSED")


def _full(row: dict[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """Every column, None where the row has none (a SQL row's shape), as the caller's own."""
    return {c: copy.deepcopy(row.get(c)) for c in columns}


def transcript_rows(framework: str, project_key: str, session_id: str, subpath: str | None,
                    agno_session_id: str, entries: list[dict[str, Any]], position_after: int) -> list[dict[str, Any]]:
    """Agno's `agno.db.transcripts.transcript_rows` (the rows SqliteDb stores), here because
    agno releases before 3.1.x's transcripts lack that module: entries numbered after the
    transcript's last position, each kept as its JSON text."""
    created_at = time.time_ns() // 1_000_000
    return [{"framework": framework, "project_key": project_key, "session_id": session_id, "subpath": subpath or "",
             "position": position_after + index + 1, "entry_uuid": entry.get("uuid") or None,
             "entry": json.dumps(entry), "agno_session_id": agno_session_id, "created_at": created_at}
            for index, entry in enumerate(entries)]


def _transcript_key(framework: str, project_key: str, session_id: str, subpath: str, position: int) -> str:
    return json.dumps([framework, project_key, session_id, subpath, position])


def _entry(stored: Any) -> Any:
    """A transcript entry; an erased one (its user forgotten) reads as an empty entry."""
    try:
        return json.loads(stored)
    except (TypeError, ValueError):
        return {}


def _newest_first(rows: list[dict[str, Any]], *tie: str) -> list[dict[str, Any]]:
    """`ORDER BY created_at DESC[, tie]` with SQLite's NULLs-last for descending order."""
    present = [r for r in rows if r.get("created_at") is not None]
    present.sort(key=lambda r: tuple(r.get(t) or "" for t in tie))
    present.sort(key=lambda r: r["created_at"], reverse=True)
    return present + [r for r in rows if r.get("created_at") is None]


class ExtraMethods(RecordMethods):
    """Mixed into `EventLogDb` before the session and record methods (see the module)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """Rebuild from `to_dict()` (Agno's registry stores dbs that way): the same id, and the
        same store. `to_dict` redacts a URL's password, so such a URL is not reused: the store
        then comes from the environment (EVENTLOG_URL / REDIS_URL), which holds the secret."""
        url = data.get("url")
        if not isinstance(url, str) or "***" in url:
            url = None
        return cls(url, id=data.get("id"))  # type: ignore[call-arg]

    def _rows_of(self, table: str, **filters: Any) -> list[dict[str, Any]]:
        """Rows that may match every filter given (the narrowest scope over the index, else
        the table), in table order: callers still test each row."""
        with self._reading() as states:
            return candidates(self._table(states, table), **filters)

    def _emit_rows(self, table: str, payloads: list[Payload], row: dict[str, Any]) -> None:
        if payloads:
            self._emit(record_stream(table), payloads,
                       actor_of(row, session_id=row.get("session_id"), user_id=row.get("user_id"),
                                run_id=row.get("run_id")))

    # --- compactions ----------------------------------------------------------------------

    def upsert_compaction(self, row: dict[str, Any]) -> None:
        """Store one compaction record. Records are immutable facts about one fold: an id
        already stored is left as it is (no event), as SqliteDb's `ON CONFLICT DO NOTHING`."""
        key = str(row["compaction_id"])
        with self._write_lock:
            with self._reading() as states:
                if key in self._table(states, "compactions"):
                    return
            record = _full(row, COMPACTION_COLUMNS)
            self._emit_rows("compactions", [RecordUpserted(table="compactions", key=key, record=record)], record)

    def get_compaction(self, compaction_id: str) -> dict[str, Any] | None:
        with self._reading() as states:
            row = self._table(states, "compactions").get(compaction_id)
            return _full(row, COMPACTION_COLUMNS) if row is not None else None

    def get_compactions_for_session(self, session_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        rows = [_full(r, COMPACTION_COLUMNS) for r in self._rows_of("compactions", session_id=session_id)
                if r.get("session_id") == session_id]
        rows = _newest_first(rows)
        return rows[:limit] if limit is not None else rows

    def delete_compactions_for_session(self, session_id: str) -> int:
        with self._write_lock:
            rows = [r for r in self._rows_of("compactions", session_id=session_id) if r.get("session_id") == session_id]
            if rows:
                self._emit_rows("compactions", [RecordDeleted(table="compactions", key=str(r["compaction_id"]))
                                                for r in rows], rows[0])
            return len(rows)

    def search_compactions(self, session_id: str, query: str | Sequence[str], limit: int = 10) -> list[dict[str, Any]]:
        """Records of one session whose archived transcript contains any of the terms
        (case-insensitive substring, as SQLite's ILIKE), newest first."""
        terms = [query] if isinstance(query, str) else list(query)
        folded = [t.lower() for t in terms if t]
        if not folded:
            return []
        rows = [_full(r, COMPACTION_COLUMNS) for r in self._rows_of("compactions", session_id=session_id)
                if r.get("session_id") == session_id and r.get("archived_messages")
                and any(t in str(r["archived_messages"]).lower() for t in folded)]
        return _newest_first(rows)[:limit]

    # --- tool results (the index of offloaded tool output) --------------------------------

    def upsert_tool_result(self, row: dict[str, Any]) -> None:
        """Insert or update by `result_id` (columns not given keep their stored values). A
        second row at the same (namespace, path) is refused, as SqliteDb's unique index."""
        key = str(row["result_id"])
        with self._write_lock:
            with self._reading() as states:
                rows = self._table(states, "tool_results")
                old = rows.get(key)
                place = {"namespace": row.get("namespace"), "path": row.get("path")}
                clash = next((k for k, r in keyed_candidates(rows, place=column_value("tool_results", "place", place))
                              if k != key and r.get("namespace") == row.get("namespace")
                              and r.get("path") == row.get("path")), None)
            if clash is not None:
                raise ValueError(f"tool result {clash} already holds {row.get('namespace')}/{row.get('path')}")
            record = _full({**(old or {}), **row}, TOOL_RESULT_COLUMNS)
            self._emit_rows("tool_results", [RecordUpserted(table="tool_results", key=key, record=record)], record)

    def get_tool_result(self, result_id: str) -> dict[str, Any] | None:
        with self._reading() as states:
            row = self._table(states, "tool_results").get(result_id)
            return _full(row, TOOL_RESULT_COLUMNS) if row is not None else None

    def get_tool_results_for_session(self, session_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        rows = [_full(r, TOOL_RESULT_COLUMNS) for r in self._rows_of("tool_results", session_id=session_id)
                if r.get("session_id") == session_id]
        rows = _newest_first(rows, "result_id")
        return rows[:limit] if limit is not None else rows

    def delete_tool_results(self, result_ids: list[str]) -> int:
        if not result_ids:
            return 0
        with self._write_lock:
            with self._reading() as states:
                table = self._table(states, "tool_results")
                found = [copy.deepcopy(table[k]) for k in dict.fromkeys(result_ids) if k in table]
            for row in found:  # one batch per owner, so each event names whose output it was
                self._emit_rows("tool_results", [RecordDeleted(table="tool_results", key=str(row["result_id"]))], row)
            return len(found)

    def get_expired_tool_results(self, now: int) -> list[dict[str, Any]]:
        """Rows whose `expires_at` has passed, soonest first (SqliteDb walks its index on it; so
        does the shared index: its expiry ordering up to `now`, ties in table order)."""
        with self._reading() as states:
            table = indexed(self._table(states, "tool_results"))
            if table is not None and table.exact("exp"):
                found = []
                for _, seq, row in table.walk("r|tool_results|exp+", desc=False):
                    if row.get("expires_at") is None or row["expires_at"] > now:
                        break
                    found.append((seq, row))
                stored = [row for _, row in sorted(found, key=lambda t: t[0])]
            else:
                stored = list(self._table(states, "tool_results").values())
        rows = [_full(r, TOOL_RESULT_COLUMNS) for r in stored
                if r.get("expires_at") is not None and r["expires_at"] <= now]
        rows.sort(key=lambda r: r["expires_at"])
        return rows

    # --- transcripts (external agents' own session files, verbatim) ----------------------

    def append_transcript_entries(self, framework: str, project_key: str, session_id: str,
                                  entries: list[dict[str, Any]], agno_session_id: str,
                                  subpath: str | None = None) -> None:
        """Number the entries after the transcript's last position (Agno's own
        `transcript_rows`); an entry whose `uuid` the transcript already holds is skipped."""
        if not entries:
            return
        sub = subpath or ""
        with self._write_lock:
            # the events are the session owner's (so an erasure of that user covers them)
            with self._reading() as states:  # (the session's row only, not its runs)
                session = states["sessions"].sessions.get(agno_session_id)
                owner = session.user_id if session is not None else None
                last, seen = self._transcript_tail(states, framework, project_key, session_id, sub,
                                                   [e.get("uuid") for e in entries if e.get("uuid")])
            payloads: list[Payload] = []
            for row in transcript_rows(framework, project_key, session_id, subpath, agno_session_id, entries, last):
                if row["entry_uuid"] is not None and row["entry_uuid"] in seen:
                    continue
                if row["entry_uuid"] is not None:
                    seen.add(row["entry_uuid"])
                key = _transcript_key(framework, project_key, session_id, sub, row["position"])
                payloads.append(RecordUpserted(table="transcripts", key=key, record=row))
            self._emit_rows("transcripts", payloads, {"session_id": agno_session_id, "user_id": owner})

    def _transcript_tail(self, states: Any, framework: str, project_key: str, session_id: str, sub: str,
                         uuids: list[str]) -> tuple[int, set[str]]:
        """A transcript's last position and which of `uuids` it already holds. Over the index:
        the last row of the transcript's scope (positions grow with insertion: each append
        numbers after the last) and one scope per uuid asked about, not the transcript."""
        rows = self._table(states, "transcripts")
        table = indexed(rows)
        doc = {"framework": framework, "project_key": project_key, "session_id": session_id, "subpath": sub}
        if table is None:
            mine = [r for r in rows.values() if (r["framework"], r["project_key"], r["session_id"], r["subpath"])
                    == (framework, project_key, session_id, sub)]
            return (max((r["position"] for r in mine), default=0),
                    {r["entry_uuid"] for r in mine if r.get("entry_uuid")})
        ordering = table.scope("doc", column_value("transcripts", "doc", doc))
        tail = table.page(ordering, desc=True, offset=0, limit=1) if ordering is not None else []
        seen = set()
        for uuid in dict.fromkeys(uuids):
            name = table.scope("uuid", column_value("transcripts", "uuid", {**doc, "entry_uuid": uuid}))
            if name is not None and table.count(name):
                seen.add(uuid)
        return (tail[0]["position"] if tail else 0), seen

    def _transcript_rows(self, **parts: Any) -> list[dict[str, Any]]:
        """The rows of one transcript (`doc`: framework, project, session, subpath), one
        session's (`sess`) or one project's (`proj`), from that scope; callers still test."""
        scope, columns = next(iter(parts.items()))
        return self._rows_of("transcripts", **{scope: column_value("transcripts", scope, columns)})

    def get_transcript_entries(self, framework: str, project_key: str, session_id: str,
                               subpath: str | None = None) -> list[dict[str, Any]]:
        doc = {"framework": framework, "project_key": project_key, "session_id": session_id, "subpath": subpath or ""}
        rows = [r for r in self._transcript_rows(doc=doc)
                if (r["framework"], r["project_key"], r["session_id"], r["subpath"])
                == (framework, project_key, session_id, subpath or "")]
        rows.sort(key=lambda r: r["position"])
        return [_entry(r["entry"]) for r in rows]

    def list_transcript_sessions(self, framework: str, project_key: str) -> list[dict[str, Any]]:
        """Main transcripts of a project: `{session_id, mtime}` (the last append's time)."""
        mtime: dict[str, Any] = {}
        for r in self._transcript_rows(proj={"framework": framework, "project_key": project_key}):
            if r["framework"] == framework and r["project_key"] == project_key and r["subpath"] == "":
                sid = r["session_id"]
                mtime[sid] = max(mtime.get(sid, r["created_at"]), r["created_at"])
        return [{"session_id": s, "mtime": t} for s, t in mtime.items()]

    def list_transcript_subpaths(self, framework: str, project_key: str, session_id: str) -> list[str]:
        sess = {"framework": framework, "project_key": project_key, "session_id": session_id}
        return sorted({r["subpath"] for r in self._transcript_rows(sess=sess)
                       if r["framework"] == framework and r["project_key"] == project_key
                       and r["session_id"] == session_id and r["subpath"] != ""})

    def delete_transcript(self, framework: str, project_key: str, session_id: str,
                          subpath: str | None = None) -> None:
        """Delete a transcript (one subpath of it, if given; else all of its subpaths)."""
        self._delete_transcripts(lambda r: r["framework"] == framework and r["project_key"] == project_key
                                 and r["session_id"] == session_id and (subpath is None or r["subpath"] == subpath),
                                 sess=column_value("transcripts", "sess", {"framework": framework,
                                                                           "project_key": project_key,
                                                                           "session_id": session_id}))

    def _delete_transcripts(self, match: Any, **scope: Any) -> None:
        """Delete the rows `match` keeps of those `scope` (a `candidates` filter) names."""
        with self._write_lock:
            with self._reading() as states:
                gone = [(k, r.get("agno_session_id")) for k, r in keyed_candidates(self._table(states, "transcripts"),
                                                                                     **scope) if match(r)]
            by_session: dict[Any, list[Payload]] = {}
            for key, owner in gone:
                by_session.setdefault(owner, []).append(RecordDeleted(table="transcripts", key=key))
            for owner, payloads in by_session.items():
                self._emit_rows("transcripts", payloads, {"session_id": owner})

    # --- the cascade of a session delete --------------------------------------------------

    def _cascade(self, session_ids: Sequence[str]) -> None:
        ids = set(session_ids)
        for sid in dict.fromkeys(session_ids):  # (one scope per session over the index)
            self._delete_transcripts(lambda r, sid=sid: r.get("agno_session_id") == sid, agno_session_id=sid)
            self.delete_compactions_for_session(sid)
        results = [r["result_id"] for sid in dict.fromkeys(session_ids)
                   for r in self._rows_of("tool_results", session_id=sid) if r.get("session_id") in ids]
        self.delete_tool_results(list(dict.fromkeys(results)))

    def delete_session(self, session_id: str, user_id: str | None = None) -> bool:
        """Delete the session (see SessionMethods) and, if it was deleted, its transcripts,
        compaction records and tool-result rows (SqliteDb's cascade)."""
        with self._write_lock:
            deleted: bool = super().delete_session(session_id, user_id=user_id)  # type: ignore[misc]
            if deleted:
                self._cascade([session_id])
            return deleted

    def delete_sessions(self, session_ids: list[str], user_id: str | None = None) -> None:
        """As SqliteDb: an unscoped delete also cleans up after sessions already gone; a
        user-scoped one cascades only for the sessions it was allowed to delete."""
        with self._write_lock:
            allowed = [sid for sid in session_ids if self.delete_session(sid, user_id=user_id)]
            if user_id is None:
                self._cascade([sid for sid in session_ids if sid not in allowed])

    # --- sessions and runs ----------------------------------------------------------------

    def reassign_session_owner(self, session_id: str, *, previous_user_id: str, user_id: str | None) -> bool:
        """Give an idle session to `user_id` if its owner is still `previous_user_id` and no run
        of it is pending, running or paused: one `session.fields_changed` event written as the
        previous owner. The runs keep the user they were recorded with (history is not
        rewritten). Unlike SqliteDb the session's `updated_at` moves (it is the last event's)."""
        with self._write_lock, self._session_lock(session_id):
            row = self.get_session(session_id, deserialize=False)  # type: ignore[attr-defined]
            if row is None or row.get("user_id") != previous_user_id:
                return False
            runs = self.get_runs(session_id=session_id, deserialize=False)[0]  # type: ignore[attr-defined]
            if any(getattr(r.get("status"), "value", r.get("status")) in _ACTIVE for r in runs):
                return False
            self._emit(session_stream(session_id),
                       [SessionFieldsChanged(session_id=session_id, fields={"user_id": user_id})],
                       actor_of(row, session_id=session_id, user_id=previous_user_id))
            return True

    def cancel_pending_run(self, run_id: str, *, session_id: str, reason: str, user_id: str | None = None,
                           expected_status: str = "PENDING") -> bool:
        """Mark a run CANCELLED if it is still `expected_status` (PENDING or RUNNING), in that
        session, and the caller's (or nobody's); its content becomes `reason` if it had none.
        Checked and written under the write lock, so a concurrent status change wins."""
        if expected_status not in {"PENDING", "RUNNING"}:
            raise ValueError("Only Pending or Running runs can be cancelled by recovery")
        with self._write_lock, self._session_lock(session_id):
            runs = self.get_runs(session_id=session_id, deserialize=False)[0]  # type: ignore[attr-defined]
            run = next((r for r in runs if r.get("run_id") == run_id), None)
            if run is None:
                return False
            status = getattr(run.get("status"), "value", run.get("status"))
            owner = run.get("user_id")
            if status != expected_status or (owner is not None and owner != user_id):
                return False
            run["status"] = "CANCELLED"
            if not run.get("content"):
                run["content"] = reason
            run["updated_at"] = int(time.time())
            self.upsert_run(run, session_id, user_id=owner)  # type: ignore[attr-defined]
            return True

    # --- span statistics ------------------------------------------------------------------

    def get_span_stats(self, agent_id: str | None = None, team_id: str | None = None,
                       workflow_id: str | None = None, start_time: datetime | None = None,
                       end_time: datetime | None = None, name: str | None = None, span_type: str | None = None,
                       limit: int | None = 20, page: int | None = 1, sort_by: str = "total_calls",
                       sort_order: str = "desc") -> tuple[list[dict[str, Any]], int]:
        """Per (span name, span kind): calls, mean and max duration, errors, last call — as
        SqliteDb computes them (p95 is None there: SQLite has no percentile; sorting by it
        falls back to total_calls). Span attributes are read only for their kind. Over the
        index, with no name, component or time filter, the per-group statistics the index
        keeps are read (one row a group, not the spans); otherwise only the spans of one
        name, or of the traces of one component, when the call names them, or those started
        in the time range given (a grouping of every span otherwise)."""
        with self._reading() as states:
            span_table = self._table(states, "spans")
            table = indexed(span_table)
            if (table is not None and not (agent_id or team_id or workflow_id or start_time or end_time or name)
                    and table.count("r|spans|stat|odd") == 0):
                stats = _kept_span_stats(table, span_type)
            else:
                stats = self._grouped_span_stats(states, span_table, agent_id, team_id, workflow_id, start_time,
                                                 end_time, name, span_type)
        column = sort_by if sort_by in ("total_calls", "avg_duration_ms", "max_duration_ms", "error_count",
                                        "last_called_at") else "total_calls"
        stats.sort(key=lambda r: (str(r["name"]), str(r["span_type"])))  # the tie-breaks: name, kind
        present = [r for r in stats if r[column] is not None]
        absent = [r for r in stats if r[column] is None]
        present.sort(key=lambda r: r[column], reverse=sort_order != "asc")
        ordered = absent + present if sort_order == "asc" else present + absent
        total = len(ordered)
        offset = (page - 1) * limit if page and limit else 0
        return (ordered[offset:offset + limit] if limit is not None else ordered[offset:]), total

    def _grouped_span_stats(self, states: Any, span_table: Any, agent_id: str | None, team_id: str | None,
                            workflow_id: str | None, start_time: datetime | None, end_time: datetime | None,
                            name: str | None, span_type: str | None) -> list[dict[str, Any]]:
        """The statistics of every (name, kind) group of the spans the filters keep."""
        traces = self._table(states, "traces")
        table = indexed(span_table)
        ranged = (_started_between(table, start_time, end_time)
                  if table is not None and not (name or agent_id or team_id or workflow_id) else None)
        spans = ranged if ranged is not None else candidates(span_table, name=name or None)
        if agent_id or team_id or workflow_id:
            keep = {k for k, t in keyed_candidates(traces, agent_id=agent_id or None, team_id=team_id or None,
                                                   workflow_id=workflow_id or None)
                    if (not agent_id or t.get("agent_id") == agent_id)
                    and (not team_id or t.get("team_id") == team_id)
                    and (not workflow_id or t.get("workflow_id") == workflow_id)}
            if table is not None and not name:  # the kept traces' spans, by their scopes
                spans = [row for _, _, row in table.union(table.scope("trace_id", t) for t in keep)]
            spans = [s for s in spans if s.get("trace_id") in keep]
        groups: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
        for s in spans:
            attributes = s.get("attributes")
            kind = attributes.get("openinference.span.kind") if isinstance(attributes, dict) else None
            start = s.get("start_time")
            start = start.isoformat() if isinstance(start, datetime) else start
            if start_time and (start is None or start < start_time.isoformat()):
                continue
            if end_time and (start is None or start > end_time.isoformat()):
                continue
            if name and s.get("name") != name:
                continue
            if span_type and kind != span_type:
                continue
            groups.setdefault((s.get("name"), kind), []).append({**s, "start_time": start})
        stats = []
        for (span_name, kind), members in groups.items():
            durations = [m["duration_ms"] for m in members if m.get("duration_ms") is not None]
            starts = [m["start_time"] for m in members if m.get("start_time") is not None]
            last = max(starts) if starts else None
            stats.append({
                "name": span_name, "span_type": kind, "total_calls": len(members),
                "avg_duration_ms": round(float(sum(durations) / len(durations)), 1) if durations else None,
                "p95_duration_ms": None, "max_duration_ms": max(durations) if durations else None,
                "error_count": sum(1 for m in members if m.get("status_code") == "ERROR"),
                "last_called_at": datetime.fromisoformat(last.replace("Z", "+00:00")) if last else None,
            })
        return stats


def _span_stat(span_name: Any, kind: Any, calls: int, total: Any, timed: int, longest: Any, errors: int,
               last: Any) -> dict[str, Any]:
    return {
        "name": span_name, "span_type": kind, "total_calls": calls,
        "avg_duration_ms": round(float(total / timed), 1) if timed else None,
        "p95_duration_ms": None, "max_duration_ms": longest if timed else None,
        "error_count": errors,
        "last_called_at": datetime.fromisoformat(last.replace("Z", "+00:00")) if last else None,
    }


def _started_between(table: RecordTable, start_time: Any, end_time: Any) -> list[dict[str, Any]] | None:
    """Every span the adapter's start-time range can keep, in table order, from the start
    ordering (`sst`: the wall clock of each span's ISO text, see `wall_us`), widened by a
    second each way; spans without a start are never kept by a range. None (every span,
    then) without a range, or while a span's start is not such a text."""
    if not (start_time or end_time) or table.count("r|spans|sst|odd"):
        return None
    return rows_between(table, "r|spans|sst", start_time, end_time)


def _kept_span_stats(table: RecordTable, span_type: str | None) -> list[dict[str, Any]]:
    """Every (name, kind) group's statistics as the index keeps them (`sstat`, one row a group:
    what is read grows with the span names in use, not with the spans)."""
    index = table.index
    keys = [r.key for r in index.page("ss|all", desc=False, offset=0, limit=None)]
    out = []
    for key, data in zip(keys, index.get_many("sstat", keys, table._home)):
        if data is None:
            continue
        span_name, kind = json.loads(key)
        if span_type and kind != span_type:
            continue
        out.append(_span_stat(span_name, kind, *decode_sstat(data)))
    return out
