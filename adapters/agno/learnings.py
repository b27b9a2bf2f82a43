"""EventLogDb's learnings: every learnings method of Agno's BaseDb, with SqliteDb's results.

Learnings (user profiles, session contexts, entity facts an agent's LearningMachine keeps) are
rows of the generic records read model, table `learnings`, keyed by the learning id; each
write is a `record.upserted` / `record.deleted` event whose actor is the learning's owner
(user, agent, team, session), so audit, time travel and `forget_user` see who it was about.

Rows have SqliteDb's columns (`learning_id`, `workflow_id`, ...): AgentOS's `/learnings`
routes validate them into `LearningResponse`. Rows written by earlier versions of this adapter
(keyed `id`) are read as the same shape.
"""

from __future__ import annotations

import copy
import json
import re
import time
from typing import Any

from agno.db.utils import learning_search_patterns, validate_pagination

from adapters.agno.core import actor_of
from adapters.agno.records import RecordMethods
from adapters.agno.scoped import candidates, indexed, keyed_candidates
from eventlog import RecordDeleted, RecordUpserted
from eventlog.names import record_stream
from projections.index.indexer import decode_lstat
from projections.index.record_view import RecordTable
from projections.index.tables import learning_stat_kind, learning_stat_prefix

TABLE = "learnings"
# SqliteDb's columns, in its order
COLUMNS = ("learning_id", "learning_type", "namespace", "user_id", "agent_id", "team_id", "workflow_id",
           "session_id", "entity_id", "entity_type", "content", "metadata", "created_at", "updated_at")
_UNINDEXED = frozenset({"updated_at", "content", "metadata", "last_learning_updated_at"})
_FILTERS = ("learning_type", "user_id", "agent_id", "team_id", "workflow_id", "session_id", "namespace",
            "entity_id", "entity_type")


def learning_row(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored row in SqliteDb's shape (older rows of this adapter are keyed `id`)."""
    row = {c: copy.deepcopy(stored.get(c)) for c in COLUMNS}
    if row["learning_id"] is None:
        row["learning_id"] = stored.get("id")
    return row


def _like(pattern: str) -> re.Pattern[str]:
    """A SQL `ILIKE ... ESCAPE '\\'` pattern as a regular expression (`%` any run, `_` one
    character, `\\x` a literal x), case-insensitive as SQLite's LIKE."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _sort_value(row: dict[str, Any], sort_by: str) -> Any:
    if sort_by == "updated_at":  # SqliteDb sorts by COALESCE(updated_at, created_at)
        return row.get("updated_at") if row.get("updated_at") is not None else row.get("created_at")
    return row.get(sort_by)


def _sorted(rows: list[dict[str, Any]], sort_by: str, descending: bool) -> list[dict[str, Any]]:
    """SQL ordering: NULLs first ascending, last descending (SQLite's rule). Ties are in
    table order, except descending on an indexed column, where SQLite walks its index
    (value, rowid) backwards and returns them reversed. `updated_at` has no index (SqliteDb
    sorts by an expression over it), so its ties keep table order both ways."""
    present = [r for r in rows if _sort_value(r, sort_by) is not None]
    missing = [r for r in rows if _sort_value(r, sort_by) is None]
    if descending and sort_by in _UNINDEXED:
        present.sort(key=lambda r: _sort_value(r, sort_by), reverse=True)
        return present + missing
    present.sort(key=lambda r: _sort_value(r, sort_by))
    return present[::-1] + missing[::-1] if descending else missing + present


class LearningMethods(RecordMethods):
    """The learnings table (mixed into `EventLogDb` before `RecordMethods`)."""

    def _learning_rows(self, *, or_unowned: str | None = None, **filters: Any) -> list[dict[str, Any]]:
        """Rows matching every filter that is not None, in table order, as the caller's own;
        with `or_unowned`, also only rows of that user or of nobody. Over the index only the
        narrowest scope the filters name is read (a user's rows and the unowned ones, for
        `or_unowned`), the whole table when they name none."""
        wanted = {k: v for k, v in filters.items() if v is not None}
        with self._reading() as states:
            rows_of = self._table(states, TABLE)
            table = indexed(rows_of)
            if table is not None and or_unowned is not None:
                narrow = table.narrowest(wanted)
                owned = [table.scope("user_id", or_unowned), table.scope("user_id", None)]
                if narrow is not None and table.count(narrow) <= sum(table.count(n) for n in owned if n):
                    stored = [row for _, _, row in table.rows_of(narrow)]
                else:
                    stored = [row for _, _, row in table.union(owned)]
            else:
                stored = candidates(rows_of, **wanted)
        rows = [learning_row(r) for r in stored]
        return [r for r in rows if all(r.get(k) == v for k, v in wanted.items())
                and (or_unowned is None or r.get("user_id") in (or_unowned, None))]

    def _learning_actor(self, row: dict[str, Any]) -> Any:
        return actor_of(row, session_id=row.get("session_id"), user_id=row.get("user_id"))

    # --- writes ---------------------------------------------------------------------------

    def upsert_learning(self, id: str, learning_type: str, content: dict[str, Any], user_id: str | None = None,
                        agent_id: str | None = None, team_id: str | None = None, session_id: str | None = None,
                        namespace: str | None = None, entity_id: str | None = None,
                        entity_type: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        """Insert, or (same id) replace content and metadata — SqliteDb keeps the identity
        columns and `created_at` of an existing row."""
        now = int(time.time())
        with self._write_lock:
            with self._reading() as states:
                existing = self._table(states, TABLE).get(id)
            if existing is not None:
                row = {**learning_row(existing), "content": content, "metadata": metadata, "updated_at": now}
            else:
                row = {"learning_id": id, "learning_type": learning_type, "namespace": namespace,
                       "user_id": user_id, "agent_id": agent_id, "team_id": team_id, "workflow_id": None,
                       "session_id": session_id, "entity_id": entity_id, "entity_type": entity_type,
                       "content": content, "metadata": metadata, "created_at": now, "updated_at": now}
            self._emit(record_stream(TABLE), [RecordUpserted(table=TABLE, key=id, record=row)],
                       self._learning_actor(row))

    def update_learning(self, id: str, content: dict[str, Any], metadata: dict[str, Any] | None = None) -> bool:
        """Replace content and metadata of an existing learning; False (and no event) if the
        id is unknown — never re-creates a deleted row."""
        with self._write_lock:
            with self._reading() as states:
                existing = self._table(states, TABLE).get(id)
            if existing is None:
                return False
            row = {**learning_row(existing), "content": content, "metadata": metadata,
                   "updated_at": int(time.time())}
            self._emit(record_stream(TABLE), [RecordUpserted(table=TABLE, key=id, record=row)],
                       self._learning_actor(row))
            return True

    def delete_learning(self, id: str) -> bool:
        with self._write_lock:
            with self._reading() as states:
                existing = self._table(states, TABLE).get(id)
            if existing is None:
                return False
            self._emit(record_stream(TABLE), [RecordDeleted(table=TABLE, key=id)],
                       self._learning_actor(learning_row(existing)))
            return True

    def delete_user_learnings(self, user_id: str, learning_type: str | None = None) -> int:
        """Delete every learning of `user_id` (of one type if given), as one batch of events;
        returns how many."""
        with self._write_lock:
            with self._reading() as states:
                keys = [k for k, r in keyed_candidates(self._table(states, TABLE), user_id=user_id)
                        if r.get("user_id") == user_id
                        and (learning_type is None or r.get("learning_type") == learning_type)]
            if keys:
                self._emit(record_stream(TABLE), [RecordDeleted(table=TABLE, key=k) for k in keys],
                           actor_of({}, user_id=user_id))
            return len(keys)

    # --- reads ----------------------------------------------------------------------------

    def get_learning(self, learning_type: str, user_id: str | None = None, agent_id: str | None = None,
                     team_id: str | None = None, session_id: str | None = None, namespace: str | None = None,
                     entity_id: str | None = None, entity_type: str | None = None,
                     workflow_id: str | None = None) -> dict[str, Any] | None:
        """`{"content": ...}` of a matching learning (the most recently updated), or None."""
        rows = self._learning_rows(learning_type=learning_type, user_id=user_id, agent_id=agent_id,
                                   team_id=team_id, workflow_id=workflow_id, session_id=session_id,
                                   namespace=namespace, entity_id=entity_id, entity_type=entity_type)
        if not rows:
            return None
        return {"content": _sorted(rows, "updated_at", True)[0]["content"]}

    def get_learning_by_id(self, id: str) -> dict[str, Any] | None:
        with self._reading() as states:
            stored = self._table(states, TABLE).get(id)
            return learning_row(stored) if stored is not None else None

    def get_learnings(self, learning_type: str | None = None, user_id: str | None = None,
                      agent_id: str | None = None, team_id: str | None = None, session_id: str | None = None,
                      namespace: str | None = None, entity_id: str | None = None, entity_type: str | None = None,
                      limit: int | None = None, workflow_id: str | None = None) -> list[dict[str, Any]]:
        """Matching rows, most recently updated first."""
        rows = self._learning_rows(learning_type=learning_type, user_id=user_id, agent_id=agent_id,
                                   team_id=team_id, workflow_id=workflow_id, session_id=session_id,
                                   namespace=namespace, entity_id=entity_id, entity_type=entity_type)
        rows = _by_updated(rows)
        return rows[:limit] if limit is not None else rows

    def search_learnings(self, query: str, learning_type: str | None = None, user_id: str | None = None,
                         agent_id: str | None = None, team_id: str | None = None, workflow_id: str | None = None,
                         session_id: str | None = None, namespace: str | None = None, entity_id: str | None = None,
                         entity_type: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Rows whose content matches `query` as SqliteDb matches it: Agno's own ILIKE patterns
        (spaces, underscores and hyphens cross each other; `%` is literal) over the content's
        JSON text (`ensure_ascii`, as SQLite stores it), most recently updated first."""
        patterns = [_like(p) for p in learning_search_patterns(query)]
        if not patterns:
            return []
        rows = self._learning_rows(learning_type=learning_type, user_id=user_id, agent_id=agent_id,
                                   team_id=team_id, workflow_id=workflow_id, session_id=session_id,
                                   namespace=namespace, entity_id=entity_id, entity_type=entity_type)
        hits = [r for r in rows if any(p.fullmatch(json.dumps(r["content"])) for p in patterns)]
        hits = _by_updated(hits)
        return hits[:limit] if limit is not None else hits

    def list_learnings(self, learning_type: str | None = None, user_id: str | None = None,
                       agent_id: str | None = None, team_id: str | None = None, session_id: str | None = None,
                       namespace: str | None = None, entity_id: str | None = None, entity_type: str | None = None,
                       include_global: bool = False, limit: int = 100, page: int = 1, sort_by: str | None = None,
                       sort_order: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """A page of matching rows and the total. With `include_global`, a user's list also
        holds the learnings nobody owns (AgentOS passes it for a scoped caller). With no
        filter (AgentOS's learnings page for an admin) the page is read from the index's
        ordering of the sort at its offset, not the table."""
        filters = (learning_type, user_id, agent_id, team_id, session_id, namespace, entity_id, entity_type)
        if all(f is None for f in filters):
            found = self._learning_page(limit, page, sort_by, sort_order)
            if found is not None:
                return found
        rows = self._learning_rows(learning_type=learning_type, agent_id=agent_id, team_id=team_id,
                                   session_id=session_id, namespace=namespace, entity_id=entity_id,
                                   entity_type=entity_type, user_id=None if include_global else user_id,
                                   or_unowned=user_id if include_global else None)
        total = len(rows)
        column = sort_by or "updated_at"
        if column in COLUMNS:  # an unknown column leaves the table's order, as SqliteDb's apply_sorting
            rows = _sorted(rows, column, (sort_order or "desc") != "asc")
        start = (page - 1) * limit
        return rows[start:start + limit], total

    def _learning_page(self, limit: int, page: int, sort_by: str | None,
                       sort_order: str | None) -> tuple[list[dict[str, Any]], int] | None:
        """A page of the whole table from an ordering (None: no index, or a sort it has no
        ordering for, or rows whose sort values it cannot order exactly)."""
        column = sort_by or "updated_at"
        sort = {"created_at": "qcre", "updated_at": "qupd"}.get(column) if column in COLUMNS else "seq"
        if sort is None or limit is None or page is None or limit < 1 or page < 1:
            return None
        with self._reading() as states:
            table = indexed(self._table(states, TABLE))
            if table is None or (sort != "seq" and not table.exact(sort)):
                return None
            desc = (sort_order or "desc") != "asc"
            ordering = f"r|{TABLE}|seq" if sort == "seq" else f"r|{TABLE}|{sort}{'-' if desc else '+'}"
            rows = table.page(ordering, desc=desc and sort != "seq", offset=(page - 1) * limit, limit=limit)
            total = table.count()
        return [learning_row(r) for r in rows], total

    def get_learnings_user_stats(self, learning_type: str | None = None, limit: int | None = None,
                                 page: int | None = None, user_id: str | None = None, sort_by: str | None = None,
                                 sort_order: str | None = None) -> tuple[list[dict[str, Any]], int]:
        """Per owner (rows with no user are left out): the last time one of their learnings
        changed; sorted by that (default) or by `user_id`. Over the index, with no filter, a
        page of the per-user statistics the index keeps, read from their ordering."""
        validate_pagination(limit, page)
        if (learning_type is None or isinstance(learning_type, str)) and user_id is None:
            with self._reading() as states:
                table = indexed(self._table(states, TABLE))
                if table is not None and table.count(f"r|{TABLE}|stat|odd") == 0:
                    return _kept_user_stats(table, learning_type, limit, page, sort_by, sort_order)
        rows = self._learning_rows(learning_type=learning_type, user_id=user_id)
        last: dict[str, Any] = {}
        for r in rows:
            owner = r["user_id"]
            if owner is None:
                continue
            value = r.get("updated_at")
            if owner not in last or (value is not None and (last[owner] is None or value > last[owner])):
                last[owner] = value
        stats = [{"user_id": u, "last_learning_updated_at": t} for u, t in last.items()]
        column = "user_id" if sort_by == "user_id" else "last_learning_updated_at"
        stats = _sorted(stats, column, sort_order != "asc")
        total = len(stats)
        if limit is not None:
            start = (page - 1) * limit if page is not None else 0
            stats = stats[start:start + limit]
        return stats, total


def _by_updated(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`ORDER BY updated_at DESC` (NULLs last)."""
    present = [r for r in rows if r.get("updated_at") is not None]
    present.sort(key=lambda r: r["updated_at"], reverse=True)
    return present + [r for r in rows if r.get("updated_at") is None]


def _kept_user_stats(table: RecordTable, learning_type: str | None, limit: int | None, page: int | None,
                     sort_by: str | None, sort_order: str | None) -> tuple[list[dict[str, Any]], int]:
    """The page `get_learnings_user_stats` gives, from the index's per-user statistics
    (`lstat`, over one learning type `lstat:<type>`): by user id (`lu|user`, ties by the id
    itself) or by the latest update (`lu|last-` descending, `lu|last+` ascending: ties, and
    users with no update — last descending, first ascending — in the order the users first
    appear in the table)."""
    index = table.index
    desc = sort_order != "asc"
    prefix = learning_stat_prefix(learning_type)
    ordering = prefix + ("user" if sort_by == "user_id" else "last-" if desc else "last+")
    offset = 0 if limit is None or page is None else (page - 1) * limit
    keys = [r.key for r in index.page(ordering, desc=desc, offset=offset, limit=limit)]
    found = [(key, decode_lstat(data))
             for key, data in zip(keys, index.get_many(learning_stat_kind(learning_type), keys, table._home))
             if data is not None]
    return ([{"user_id": key, "last_learning_updated_at": stat[2]} for key, stat in found],
            index.count(prefix + "user"))
