"""EventLogDb's sessions and runs: Agno's session rows and run rows, as events and back.

Behaviour follows Agno's InMemoryDb (the reference the parity test compares against): owner
guards, `runs_limit`, `include_runs`, sorting with `apply_sorting`, 1-based pages, and the
same return shapes. Agent sessions reuse deserialized run objects between reads, so a turn's
`get_session` cost does not grow with the length of the conversation.
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from agno.db.base import SessionType
from agno.db.in_memory.utils import apply_sorting
from agno.db.utils import deserialize_history_run, deserialize_session, deserialize_sessions, filter_context_runs
from agno.session import AgentSession, TeamSession, WorkflowSession

from adapters.agno.core import EventLogCore, actor_of, log
from adapters.agno.rows import HEAD_SORTS, session_deltas, session_row, session_sort_dict
from eventlog import RunDeleted, RunRecorded, SessionDeleted, SessionRenamed
from eventlog.json_check import check_storable, to_plain
from eventlog.names import session_stream
from projections import Conversation, ConversationState, SessionRow, SessionsState, fork_session
from projections.conversation import RunEntry
from projections.index import runs as runs_index
from projections.index.fallback_reads import ReadAgain
from projections.index.indexer import VALUE_SORTS, head_sort_value, search_name, session_orderings
from projections.index.views import IndexedStates
from projections.timetravel import Point


def run_dicts(entries: Sequence[RunEntry]) -> list[dict[str, Any]]:
    """The runs of `entries` as dicts the caller owns: Agno's `from_dict` pops keys from what
    it is given, and callers may mutate what they get. `RunEntry.run` decodes a new dict on
    every read (the read model keeps runs as JSON), so no copy is needed; the parity test
    `test_run_reads_hand_out_the_callers_own_dicts` guards that."""
    return [entry.run for entry in entries]


def _type_value(session_type: SessionType | str | None) -> str | None:
    if session_type is None:
        return None
    return session_type.value if isinstance(session_type, SessionType) else str(session_type)


def _page(rows: list[Any], limit: int | None, page: int | None) -> list[Any]:
    if limit is None:
        return rows
    start = (page - 1) * limit if page is not None else 0
    return rows[start : start + limit]


class SessionMethods(EventLogCore):
    # session -> (rewrites, runs built, run objects, event id of the last run built)
    _run_cache: dict[str, tuple[int, int, list[Any], str]]

    # --- helpers --------------------------------------------------------------------------

    @staticmethod
    def _runs_of(states: dict[str, Any], session_id: str) -> list[dict[str, Any]]:
        """The session's runs in order, as dicts the caller owns (see `run_dicts`)."""
        conv: ConversationState = states["conversation"]
        c = conv.sessions.get(session_id)
        return run_dicts(c.runs) if c is not None else []

    @staticmethod
    def _conversation_of(states: dict[str, Any], row: SessionRow) -> Conversation | None:
        """The conversation of `row`'s session; over the index, told what the row knows of its
        length (a short session has no snapshot to look for)."""
        sessions = states["conversation"].sessions
        of_row = getattr(sessions, "of_row", None)
        conv: Conversation | None = of_row(row) if of_row is not None else sessions.get(row.session_id)
        return conv

    def _row_dict(self, states: dict[str, Any], row: SessionRow, *, with_runs: bool = True,
                  runs_limit: int | None = None) -> dict[str, Any]:
        conv = self._conversation_of(states, row) if with_runs else None
        runs = run_dicts(conv.runs) if conv is not None else []
        if runs_limit is not None:
            runs = filter_context_runs(runs)[-runs_limit:]
        return session_row(row, runs or None)

    def _agent_session(self, states: dict[str, Any], row: SessionRow) -> AgentSession | None:
        """An AgentSession whose runs are shared, already-deserialized objects (see module).

        The cache remembers how many runs it has built and the conversation's rewrite count:
        while runs were only appended, a read deserializes just the new ones and copies the
        list (C speed), so a turn's cost does not grow with the session."""
        session = AgentSession.from_dict(session_row(row, None))
        if session is None:
            return None
        conv = self._conversation_of(states, row)
        entries = conv.runs if conv is not None else []
        rewrites = conv.rewrites if conv is not None else 0
        cached = self._run_cache.get(row.session_id)
        if (cached is not None and cached[0] == rewrites and cached[1] <= len(entries)
                and (cached[1] == 0 or entries[cached[1] - 1].event_id == cached[3])):
            objects, start = cached[2], cached[1]
        else:  # first read, or runs were replaced/deleted (or the session was re-created)
            objects, start = [], 0
        # One run at a time: each dict is decoded just before Agno consumes it, so the memory
        # of one is reused by the next (a list of 1,000 fresh dicts first would fault in
        # megabytes of new pages a cold read then pays for). Each is still the caller's own.
        for entry in entries[start:]:
            run = deserialize_history_run(entry.run)
            if run is not None:
                objects.append(run)
        last = entries[-1].event_id if entries else ""
        self._run_cache[row.session_id] = (rewrites, len(entries), objects, last)
        session.runs = list(objects)
        return session

    # --- sessions -------------------------------------------------------------------------

    def get_session(
        self,
        session_id: str,
        session_type: SessionType | None = None,
        user_id: str | None = None,
        deserialize: bool | None = True,
        runs_limit: int | None = None,
    ) -> AgentSession | TeamSession | WorkflowSession | dict[str, Any] | None:
        read = self._caught_up_reader()  # (Redis: the look at the log's end and the row, one round trip)
        if read is not None:
            try:
                return self._get_session(session_id, session_type, user_id, deserialize, runs_limit, read)
            except ReadAgain:  # (the fallback found Redis away: its outage fold answers)
                pass
        return self._get_session(session_id, session_type, user_id, deserialize, runs_limit, None)

    def _get_session(
        self,
        session_id: str,
        session_type: SessionType | None,
        user_id: str | None,
        deserialize: bool | None,
        runs_limit: int | None,
        read: Callable[[str, str, int | None], bytes | None] | None,
    ) -> AgentSession | TeamSession | WorkflowSession | dict[str, Any] | None:
        """`get_session`, its row read by `read` (which also catches up) when one is given."""
        with self._reading(caught_up=read is not None) as states:
            sessions: SessionsState = states["sessions"]
            row = sessions.sessions.get(session_id) if read is None else sessions.sessions.get_with(session_id, read)
            if row is None or (user_id is not None and row.user_id != user_id):
                return None
            if (deserialize and runs_limit is None and row.session_type == SessionType.AGENT.value
                    and (session_type is None or session_type == SessionType.AGENT)):
                agent_session = self._agent_session(states, row)
                if agent_session is not None:
                    return agent_session
            data = self._row_dict(states, row, runs_limit=runs_limit)
        if not deserialize:
            return data
        return deserialize_session(session_type, data)

    def get_sessions(
        self,
        session_type: SessionType | None = None,
        user_id: str | None = None,
        component_id: str | None = None,
        session_name: str | None = None,
        start_timestamp: int | None = None,
        end_timestamp: int | None = None,
        limit: int | None = None,
        page: int | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
        deserialize: bool | None = True,
        include_runs: bool = True,
    ) -> Any:
        kind = _type_value(session_type)
        with self._reading() as states:
            if isinstance(states, IndexedStates) and sort_by not in _INDEXED_SORTS:
                # InMemoryDb's `apply_sorting` leaves the order as it is when the first match
                # has no such key (a column the session dict does not have, as `session_name`):
                # that is the page with no `sort_by`, after one look at the first match
                first, _ = _indexed_sessions(states, kind, user_id, component_id, session_name, start_timestamp,
                                             end_timestamp, 1, 1, None, None)
                if not first or not session_sort_dict(first[0], sort_by):
                    sort_by = None
            if isinstance(states, IndexedStates) and sort_by in _INDEXED_SORTS:
                rows, total = _indexed_sessions(states, kind, user_id, component_id, session_name,
                                                start_timestamp, end_timestamp, limit, page, sort_by, sort_order)
                dicts = [self._row_dict(states, r, with_runs=include_runs) for r in rows]
                if not deserialize:
                    return dicts, total
                return deserialize_sessions(session_type, dicts)
            if isinstance(states, IndexedStates) and sort_by in VALUE_SORTS and limit is not None:
                # A column of the value orderings: the page read from them (a user's or an
                # agent's sessions among all of the type, where that is cheaper than sorting
                # their heads)
                found_ids = _value_page(states, kind, user_id, component_id, session_name, start_timestamp,
                                        end_timestamp, limit, page, sort_by, sort_order)
                if found_ids is not None:
                    return self._sessions_page(states, *found_ids, include_runs, deserialize, session_type)
            if isinstance(states, IndexedStates) and sort_by in HEAD_SORTS:
                # An id column no ordering has (or a scope a value ordering would walk too
                # much of): the page of the matches' `SessionHead`s (a user's sessions cost
                # that user's), sorted as InMemoryDb would; then only the page's rows are read.
                source = _head_source(states, kind, user_id, component_id)
                chunks = states.session_heads(source)
                if source is None and (user_id, component_id, session_name, start_timestamp,
                                       end_timestamp) == (None,) * 5:  # (the usual page: by type only)
                    parts = ([(head_sort_value(h, sort_by), seq, sid) for seq, sid, h in part
                              if kind is None or h.session_type == kind] for part in chunks)
                else:
                    parts = ([(head_sort_value(h, sort_by), seq, sid) for seq, sid, h in part
                              if _matches(h, kind, user_id, component_id, session_name, start_timestamp,
                                          end_timestamp)] for part in chunks)
                found = _agno_page(parts, sort_order, limit, page)
                if found is not None:
                    return self._sessions_page(states, *found, include_runs, deserialize, session_type)
            if isinstance(states, IndexedStates):
                # Any other column: every match, in insertion order, from the most selective
                # ordering, sorted below
                rows, _ = _indexed_sessions(states, kind, user_id, component_id, session_name, start_timestamp,
                                            end_timestamp, None, None, None, None)
            else:
                rows = [row for row in states["sessions"].sessions.values()
                        if _matches(row, kind, user_id, component_id, session_name, start_timestamp, end_timestamp)]
            # Sorted as InMemoryDb sorts the dicts it would return, by what of them the sort
            # looks at (`session_sort_dict`); only the page's sessions are then built, with
            # their runs.
            total = len(rows)
            if sort_by is not None:
                keyed = ([session_sort_dict(r, sort_by) for r in rows] if sort_by != "runs"
                         else [self._row_dict(states, r) for r in rows])  # (a sort by the runs themselves)
                of = {id(d): r for d, r in zip(keyed, rows)}
                rows = [of[id(d)] for d in apply_sorting(keyed, sort_by, sort_order)]
            dicts = [self._row_dict(states, r, with_runs=include_runs) for r in _page(rows, limit, page)]
        if not deserialize:
            return dicts, total
        return deserialize_sessions(session_type, dicts)

    def _sessions_page(self, states: IndexedStates, ids: list[str], total: int, include_runs: bool,
                       deserialize: bool | None, session_type: SessionType | None) -> Any:
        """`get_sessions`' answer for a page of ids found in the index: only their rows built."""
        dicts = [self._row_dict(states, r, with_runs=include_runs) for r in states.session_rows.many(ids)]
        if not deserialize:
            return dicts, total
        return deserialize_sessions(session_type, dicts)

    def rename_session(
        self,
        session_id: str,
        session_type: SessionType | None,
        session_name: str,
        user_id: str | None = None,
        deserialize: bool | None = True,
    ) -> Any:
        with self._session_lock(session_id):
            with self._reading() as states:
                row = states["sessions"].sessions.get(session_id)
                if row is None or (session_type is not None and row.session_type != _type_value(session_type)):
                    return None
                if user_id is not None and row.user_id != user_id:
                    return None
                actor = actor_of({"agent_id": row.agent_id, "team_id": row.team_id,
                                  "workflow_id": row.workflow_id, "user_id": row.user_id}, session_id=session_id)
            self._emit(session_stream(session_id), [SessionRenamed(session_id=session_id, name=session_name)], actor)
            with self._reading(caught_up=True) as states:
                data = self._row_dict(states, states["sessions"].sessions[session_id])
        if not deserialize:
            return data
        return deserialize_session(session_type, data)

    def upsert_session(self, session: Any, deserialize: bool | None = True) -> Any:
        new = to_plain(lambda: session.to_dict(include_runs=False), session, "session")  # (a cycle: InvalidEvent)
        if isinstance(session, AgentSession):
            new["session_type"] = SessionType.AGENT.value
        elif isinstance(session, TeamSession):
            new["session_type"] = SessionType.TEAM.value
        elif isinstance(session, WorkflowSession):
            new["session_type"] = SessionType.WORKFLOW.value
        sid = new["session_id"]
        with self._session_lock(sid):
            with self._reading() as states:
                old: SessionRow | None = states["sessions"].sessions.get(sid)
            if old is not None and old.user_id is not None and old.user_id != new.get("user_id"):
                return None  # owner guard: an owned session is only writable by its owner
            payloads: list[Any] = session_deltas(new, old)
            if old is None:  # its runs are written after it: check them first, so all or nothing is
                for i, run in enumerate(session.runs or []):
                    check_storable(run if isinstance(run, dict) else to_plain(run.to_dict, run, f"session.runs[{i}]"),
                                   f"session.runs[{i}]")
            self._emit(session_stream(sid), payloads, actor_of(new, session_id=sid))
            if old is None:
                for run in session.runs or []:  # a first insert may carry runs (imports, restores)
                    self.upsert_run(run, sid)
            with self._reading(caught_up=True) as states:
                row = states["sessions"].sessions[sid]
                data = session_row(row, None)
        if not deserialize:
            data["runs"] = [r if isinstance(r, dict) else r.to_dict() for r in session.runs or []]
            return data
        result = deserialize_session(None, data)
        result.runs = session.runs
        return result

    def upsert_sessions(self, sessions: list[Any], deserialize: bool | None = True,
                        preserve_updated_at: bool = False) -> list[Any]:
        results = []
        for session in sessions:
            if session is not None:
                result = self.upsert_session(session, deserialize=deserialize)
                if result is not None:
                    results.append(result)
        return results

    def delete_session(self, session_id: str, user_id: str | None = None) -> bool:
        with self._session_lock(session_id):
            with self._reading() as states:
                row = states["sessions"].sessions.get(session_id)
                if row is None or (user_id is not None and row.user_id != user_id):
                    return False
                actor = actor_of({"agent_id": row.agent_id, "team_id": row.team_id,
                                  "workflow_id": row.workflow_id, "user_id": row.user_id}, session_id=session_id)
            self._emit(session_stream(session_id), [SessionDeleted(session_id=session_id)], actor)
            self._run_cache.pop(session_id, None)
            return True

    def delete_sessions(self, session_ids: list[str], user_id: str | None = None) -> None:
        for session_id in session_ids:
            self.delete_session(session_id, user_id=user_id)

    # --- runs -----------------------------------------------------------------------------

    def upsert_run(self, run: Any, session_id: str, user_id: str | None = None,
                   run_index: int | None = None) -> None:
        run_dict = copy.deepcopy(run if isinstance(run, dict) else to_plain(run.to_dict, run, "run"))
        run_id = run_dict.get("run_id")
        if run_id is None:
            raise ValueError("Run must have a run_id")
        with self._session_lock(session_id):
            with self._reading() as states:
                row = states["sessions"].sessions.get(session_id)
                if row is None:
                    log.debug("upsert_run: session %s not found; skipping", session_id)
                    return
                conv = states["conversation"].sessions.get(session_id)
                entry = conv.get(run_id) if conv is not None else None
                if entry is not None:
                    previous = entry.run
                    if "run_index" in previous:
                        run_dict["run_index"] = previous["run_index"]
                elif run_index is not None and "run_index" not in run_dict:
                    run_dict["run_index"] = run_index
                owner = row.user_id
            actor = actor_of(run_dict, session_id=session_id, run_id=run_id,
                             user_id=user_id if user_id is not None else owner)
            self._emit(session_stream(session_id), [RunRecorded(session_id=session_id, run_id=run_id, run=run_dict)],
                       actor)

    def _find_run(self, states: dict[str, Any], run_id: str) -> tuple[SessionRow, dict[str, Any]] | None:
        if isinstance(states, IndexedStates):  # the index knows the run's session
            sid = states.run_session(run_id)
            row = states.session_rows.get(sid) if sid is not None else None
            conv = states["conversation"].sessions.get(sid) if row is not None else None
            entry = conv.get(run_id) if conv is not None else None
            return (row, entry.run) if entry is not None else None
        for sid, conv in states["conversation"].sessions.items():
            entry = conv.get(run_id)
            if entry is not None and sid in states["sessions"].sessions:
                return states["sessions"].sessions[sid], entry.run
        return None

    def get_run(self, run_id: str, deserialize: bool | None = True) -> Any:
        from agno.db.utils import deserialize_run, get_run_type

        with self._reading() as states:
            found = self._find_run(states, run_id)
            if found is None:
                return None
            run = found[1]  # already the caller's own dict
        if not deserialize:
            return run
        return deserialize_run(get_run_type(run), run)

    def get_runs(
        self,
        session_id: str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
        team_id: str | None = None,
        workflow_id: str | None = None,
        status: Any | None = None,
        limit: int | None = None,
        page: int | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
        deserialize: bool | None = True,
    ) -> Any:
        from agno.db.utils import deserialize_run, get_run_type

        expected = getattr(status, "value", status)
        rows: list[dict[str, Any]] = []
        with self._reading() as states:
            if (session_id is None and user_id is None and sort_by is None and isinstance(states, IndexedStates)
                    and states.count(runs_index.ODD) == 0):
                found = self._indexed_runs(states, agent_id, team_id, workflow_id, expected, limit, page)
                if not deserialize:
                    return found
                return [deserialize_run(get_run_type(r), r) for r in found[0]]
            if session_id is not None:  # one session: its row, not every row
                one = states["sessions"].sessions.get(session_id)
                candidates = [(session_id, one)] if one is not None else []
            elif user_id is not None and isinstance(states, IndexedStates):
                candidates = [(r.session_id, r) for r in states.session_page(
                    session_orderings(None, f"u={user_id}", "seq"), desc=False, offset=0, limit=None)]
            else:
                candidates = list(states["sessions"].sessions.items())
            for sid, row in candidates:
                if session_id is not None and sid != session_id:
                    continue
                if user_id is not None and row.user_id != user_id:
                    continue
                for run in self._runs_of(states, sid):
                    if ((agent_id is None or run.get("agent_id") == agent_id)
                            and (team_id is None or run.get("team_id") == team_id)
                            and (workflow_id is None or run.get("workflow_id") == workflow_id)
                            and (expected is None or run.get("status") == expected)):
                        rows.append(run)  # _runs_of gives the caller's own dicts
        total = len(rows)
        if sort_by is not None:
            rows = apply_sorting(rows, sort_by, sort_order)
        else:
            rows.sort(key=lambda r: (r.get("run_index") or 0, r.get("created_at") or 0))
        rows = _page(rows, limit, page if page is not None else None)
        if not deserialize:
            return rows, total
        return [deserialize_run(get_run_type(r), r) for r in rows]

    @staticmethod
    def _indexed_runs(states: IndexedStates, agent_id: str | None, team_id: str | None, workflow_id: str | None,
                      status: Any, limit: int | None, page: int | None) -> tuple[list[dict[str, Any]], int]:
        """`get_runs` across sessions from the index's run orderings (projections.index.runs):
        the narrowest scope the filters name, read from the page's offset when it answers
        them all; else its index rows walked and filtered (never the runs themselves). Only
        the page's runs are read, from their sessions' conversations."""
        wanted = [("a", 3, agent_id), ("t", 4, team_id), ("w", 5, workflow_id)]
        named = [(letter, field, value) for letter, field, value in wanted if value is not None]
        scopes = [runs_index.scope(letter, value) for letter, _, value in named]
        ordering = min(scopes, key=states.count) if scopes else runs_index.ALL
        start = (page - 1) * limit if limit is not None and page is not None else 0
        if len(named) <= 1 and status is None:
            total = states.count(ordering)
            picked = states.run_page(ordering, offset=start, limit=limit)
        else:
            matches = [(row[0], rid) for rid, row in states.run_rows(ordering)
                       if all(row[field] == value for _, field, value in named)
                       and (status is None or row[6] == status)]
            total = len(matches)
            picked = matches[start:] if limit is None else matches[start:start + limit]
        out: list[dict[str, Any]] = []
        conversations = states["conversation"].sessions
        for sid, rid in picked:
            conv = conversations.get(sid)
            entry = conv.get(rid) if conv is not None else None
            if entry is not None:
                out.append(entry.run)  # (a new dict on every read: the caller's own)
        return out, total

    def delete_run(self, run_id: str) -> bool:
        with self._write_lock:  # (which session is only known from a read: look, lock it, look again)
            with self._reading() as states:
                found = self._find_run(states, run_id)
            if found is None:
                return False
            with self._session_lock(found[0].session_id):
                with self._reading() as states:
                    again = self._find_run(states, run_id)
                if again is None or again[0].session_id != found[0].session_id:
                    return False if again is None else self.delete_run(run_id)
                row = again[0]
                self._emit(session_stream(row.session_id), [RunDeleted(session_id=row.session_id, run_id=run_id)],
                           actor_of(again[1], session_id=row.session_id, run_id=run_id, user_id=row.user_id))
                return True

    def delete_runs(self, run_ids: list[str]) -> None:
        for run_id in run_ids:
            self.delete_run(run_id)

    # --- time travel ----------------------------------------------------------------------

    def fork_session(self, session_id: str, at: Point | str | None = None,
                     new_session_id: str | None = None) -> str:
        """Copy `session_id` up to `at` (default: now) into a new session and return its id.

        An agent given the new id carries on from that earlier turn; the original session is
        untouched, and the new one records where it came from (`session.forked`)."""
        from projections.timetravel import parse_point

        point = parse_point(at) if isinstance(at, str) else at
        if point is None:
            point = self.store.last_position()
        with self._write_lock:
            new_id = fork_session(self.store, session_id, point, new_session_id)
            self._catch_up()
        return new_id


_INDEXED_SORTS = {None: "seq", "updated_at": "upd", "created_at": "cre"}
_ROLES = {SessionType.AGENT.value: "a", SessionType.TEAM.value: "t", SessionType.WORKFLOW.value: "w"}


def _indexed_sessions(states: IndexedStates, kind: str | None, user_id: str | None, component_id: str | None,
                      session_name: str | None, start: int | None, end: int | None, limit: int | None,
                      page: int | None, sort_by: str | None, sort_order: str | None) -> tuple[list[SessionRow], int]:
    """A page of sessions from the index's orderings: one sorted set picked by the most
    selective filter (the user, else the component, else all of a type), read from the
    page's offset — so the cost is the page's, whatever the number of sessions. Filters no
    ordering has (a name, a time range, a component within a user's sessions) are applied
    while walking the ordering, and then the total costs a walk of that user's, component's
    or type's sessions. Order as InMemoryDb's `apply_sorting`: descending unless
    `sort_order="asc"`; no `sort_by` keeps insertion order."""
    role = _ROLES.get(kind) if kind is not None else "c"
    orderings = _scope_orderings(kind, user_id, component_id, _INDEXED_SORTS[sort_by])
    desc = sort_by is not None and sort_order != "asc"
    offset = (page - 1) * limit if limit is not None and page is not None else 0
    needle = session_name.lower() if session_name is not None else None

    def wanted(row: SessionRow) -> bool:
        return _matches(row, kind, user_id, component_id, session_name, start, end)

    exact = (start is None and end is None
             and (component_id is None or (user_id is None and role is not None)))
    if exact and needle is None:
        return states.session_page(orderings, desc=desc, offset=offset, limit=limit), states.count(orderings)
    end_at = None if limit is None else offset + limit
    if needle is not None:  # the names first (`session_keys_named`): only the sessions they match are read
        keys = states.session_keys_named(orderings, desc=desc, needle=needle)
        if exact:
            return states.session_rows.many(keys[offset:end_at]), len(keys)
        matches = [r for r in states.session_rows.many(keys) if wanted(r)]
    else:
        matches = [r for r in states.walk_sessions(orderings, desc=desc) if wanted(r)]
    return matches[offset:end_at], len(matches)


def _scope_orderings(kind: str | None, user_id: str | None, component_id: str | None, sort: str) -> list[str]:
    """The orderings (by `sort`) of the most selective scope the filters name: the user's
    sessions, else the component's, else all of the type."""
    role = _ROLES.get(kind) if kind is not None else "c"
    if user_id is not None:
        scope = f"u={user_id}"
    elif component_id is not None and role is not None:
        scope = f"{role}={component_id}"
    else:
        scope = "all"
    return session_orderings(kind, scope, sort)


def _value_page(states: IndexedStates, kind: str | None, user_id: str | None, component_id: str | None,
                session_name: str | None, start: int | None, end: int | None, limit: int, page: int | None,
                sort_by: str, sort_order: str | None) -> tuple[list[str], int] | None:
    """(ids, total) of a page sorted by a column of `VALUE_SORTS`, from the value orderings
    of the type — when the filters are a scope the orderings count (the type's sessions, a
    user's, a component's) and, for a user or component, walking all of the type's in value
    order until the page is full (≈ page × all / scope) reads less than sorting the scope's
    heads (scope). None: sort the heads (`_head_source`)."""
    role = _ROLES.get(kind) if kind is not None else "c"
    if (session_name, start, end) != (None, None, None) or (
            component_id is not None and (user_id is not None or role is None)):
        return None
    offset = (page - 1) * limit if page is not None else 0
    desc = sort_order != "asc"
    everything = states.count(session_orderings(kind, "all", "seq"))
    if user_id is None and component_id is None:
        ids = states.session_value_page(kind, sort_by, desc=desc, offset=offset, limit=limit)
        return None if ids is None else (ids, everything)
    scope = states.count(_scope_orderings(kind, user_id, component_id, "seq"))
    if (offset + limit) * everything >= scope * scope or sort_by == _filtered_column(kind, user_id, component_id):
        return None  # (sorted by the column filtered on: the scope is one value, wherever it falls)

    def accept(head: Any) -> bool:
        return _matches(head, kind, user_id, component_id, None, None, None)

    ids = states.session_value_page(kind, sort_by, desc=desc, offset=offset, limit=limit, accept=accept,
                                    accepted=scope)
    return None if ids is None else (ids, scope)


def _filtered_column(kind: str | None, user_id: str | None, component_id: str | None) -> str | None:
    """The id column every session a scope holds has the same value of (None: none)."""
    if user_id is not None:
        return "user_id"
    return f"{kind}_id" if component_id is not None and kind in _ROLES else None


def _head_source(states: IndexedStates, kind: str | None, user_id: str | None,
                 component_id: str | None) -> list[str] | None:
    """Where `session_heads` should read the sessions the filters can match: the most
    selective scope's orderings when they hold under a quarter of all sessions, else every
    head (None: one read of the kind, faster than an ordering joined key by key)."""
    orderings = _scope_orderings(kind, user_id, component_id, "seq")
    everything = session_orderings(None, "all", "seq")
    if orderings != everything and states.count(orderings) * 4 < states.count(everything):
        return orderings
    return None


def _agno_page(chunks: Iterator[list[tuple[Any, float, str]]], sort_order: str | None, limit: int | None,
               page: int | None) -> tuple[list[str], int] | None:
    """The page of (sort value, insertion number, session id) triples, given in chunks in
    any order, that InMemoryDb's `apply_sorting` gives its dicts (the caller has checked
    that the first match has the column): a stable sort on (is None, value) of the sessions
    in insertion order (the index's: by number, then id), descending unless "asc"; and how
    many there were. Only the best page's worth is kept between chunks (`heapq.nsmallest`
    / `nlargest`), so memory is a chunk's and the page's, not the matches'. None when a
    value is not a string: sorting mixed values can fail, and then InMemoryDb leaves the
    order as it is, which only the whole list can tell. Insertion numbers repeat across
    partitions (one series each): equal ones are told apart by id, ascending for an
    ascending sort and descending for a descending one — as the value orderings give them
    (`indexer.value_members`)."""
    start = (page - 1) * limit if limit is not None and page is not None else 0
    want = None if limit is None else start + limit
    desc = sort_order != "asc"
    best: list[tuple[Any, ...]] = []
    seen = 0
    for part in chunks:
        if any(v is not None and type(v) is not str for v, _, _ in part):
            return None
        seen += len(part)
        if desc:  # value down, ties still in insertion order (a stable sort, reverse=True)
            keyed = [(v is None, v or "", -seq, sid) for v, seq, sid in part]
        else:  # value up, ties in insertion order
            keyed = [(v is None, v or "", seq, sid) for v, seq, sid in part]
        best += keyed
        if want is not None and len(best) > want:
            best = heapq.nlargest(want, best) if desc else heapq.nsmallest(want, best)
    best.sort(reverse=desc)
    return [t[-1] for t in best[start:want]], seen


def _matches(row: Any, kind: str | None, user_id: str | None, component_id: str | None,
             session_name: str | None, start: int | None, end: int | None) -> bool:
    """InMemoryDb's filters of `get_sessions`, on a `SessionRow` or a `SessionHead`."""
    return ((user_id is None or row.user_id == user_id)
            and (component_id is None or _owned_by(row, kind, component_id))
            and (start is None or row.created_at >= start)
            and (end is None or row.created_at <= end)
            and (session_name is None or session_name.lower() in search_name(row))
            and (kind is None or row.session_type == kind))


def _owned_by(row: Any, kind: str | None, component_id: str) -> bool:
    if kind == SessionType.AGENT.value:
        return row.agent_id == component_id
    if kind == SessionType.TEAM.value:
        return row.team_id == component_id
    if kind == SessionType.WORKFLOW.value:
        return row.workflow_id == component_id
    return component_id in (row.agent_id, row.team_id, row.workflow_id)
