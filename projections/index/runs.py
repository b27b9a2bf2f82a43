"""Runs across sessions in the shared read index: what `get_runs` reads when it is not asked
for one session or one user's sessions.

Agno's `get_runs` (SqliteDb: a runs table) filters by agent, team, workflow and status and
pages in `(run_index, created_at)` order. EventLogDb's in-process answer walks every session
and sorts the runs it finds — stably, so runs that tie keep the sessions' order (insertion)
and, within a session, the runs' order. The index keeps that exact order in sorted sets:

    run:  run id -> (session, ordering key, score, agent, team, workflow, status)
    gr:   ordering key -> run id, in these orderings:
          g|all            every run            score: run_index * 2^31 + created_at
          g|a=<agent>      the runs of an agent (and g|t=<team>, g|w=<workflow>), same score
          g|s=<session>    a session's runs     (to drop them when the session is deleted)
          g|odd            runs whose sort values or ids the score cannot hold exactly

The ordering key is `<session seq>|<session id>|<run seq>|<run id>` with zero-padded numbers:
ties on the score sort by it, i.e. by the session's place, then the run's (the seqs are the
partition's insertion counters; a session and its runs share a partition). A page is then
read from its offset; a status filter walks the scope's rows (index rows, not the runs) and
only the runs of the page are read from their sessions. Runs whose `run_index` or
`created_at` is not a whole number in range, or whose agent/team/workflow id is not a string,
go to `g|odd`; while any such run exists, readers take the in-process path (exact, but it
reads every session).

A run id names one run (Agno's are UUIDs): recorded in another session, the run moves there
(the in-process answer would list it in both). On a Redis Cluster the sessions' order is each
partition's insertion order, merged by insertion number (no order spans partitions), so runs
that tie across partitions may come in another order than one process's in-process fold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from eventlog import Event, RunDeleted, RunRecorded, SessionDeleted
from projections.index.base import IndexTxn, Member

ALL = "g|all"
ODD = "g|odd"
_SCOPES = (("a", 3), ("t", 4), ("w", 5))  # (ordering letter, field of the row)
_MAX_INDEX = 1 << 21
_MAX_TIME = 1 << 31


class _RunFields(msgspec.Struct):
    agent_id: Any = None
    team_id: Any = None
    workflow_id: Any = None
    status: Any = None
    run_index: Any = None
    created_at: Any = None


_fields = msgspec.json.Decoder(_RunFields)
_enc = msgspec.msgpack.Encoder()
RunRow = tuple[str, str, "float | None", Any, Any, Any, Any]
_row = msgspec.msgpack.Decoder(tuple[str, str, float | None, Any, Any, Any, Any])


def decode_run(data: bytes) -> tuple[str, str, float | None, Any, Any, Any, Any]:
    """(session id, ordering key, score or None, agent, team, workflow, status)."""
    return _row.decode(data)


def scope(column: str, value: str) -> str:
    """The ordering of the runs whose `agent_id` (a), `team_id` (t) or `workflow_id` (w) is
    `value`."""
    return f"g|{column}={value}"


def _whole(value: Any, limit: int) -> bool:
    return type(value) is int and 0 <= value < limit


def _score(fields: _RunFields) -> float | None:
    index = fields.run_index or 0  # (what the in-process sort takes: `or 0`)
    created = fields.created_at or 0
    if not (_whole(index, _MAX_INDEX) and _whole(created, _MAX_TIME)):
        return None
    return float(index * _MAX_TIME + created)


def _members(sid: str, score: float | None, row: tuple[Any, ...]) -> list[Member]:
    members: list[Member] = [(f"g|s={sid}", 0.0)]
    odd = score is None
    if score is not None:
        members.append((ALL, score))
    for letter, field in _SCOPES:
        value = row[field]
        if isinstance(value, str):
            if score is not None:
                members.append((scope(letter, value), score))
        elif value is not None:
            odd = True
    if odd:
        members.append((ODD, 0.0))
    return members


def fold_runs(txn: IndexTxn, events: list[Event], session_seq: Callable[[IndexTxn, str], int | None]) -> None:
    """Bring the run rows up to `events` (a transaction's run and session-deletion events, in
    log order, after its session rows were folded: `session_seq(txn, sid)` is the session's
    insertion number, None when it has no row)."""
    for event in events:
        p = event.payload
        if isinstance(p, SessionDeleted):
            for key in txn.keys(f"g|s={p.session_id}"):
                run_id = txn.get("gr", key)
                if run_id is not None:
                    _drop(txn, run_id.decode())
        elif isinstance(p, RunDeleted):
            _drop(txn, p.run_id)
        elif isinstance(p, RunRecorded):
            _record(txn, p, session_seq)


def _drop(txn: IndexTxn, run_id: str) -> None:
    data = txn.get("run", run_id)
    if data is None:
        return
    row = decode_run(data)
    txn.delete("gr", row[1], _members(row[0], row[2], row))
    txn.delete("run", run_id, ())


def _record(txn: IndexTxn, p: RunRecorded, session_seq: Callable[[IndexTxn, str], int | None]) -> None:
    run = p.run
    if isinstance(run, dict):
        fields = msgspec.convert({k: run.get(k) for k in _RunFields.__struct_fields__}, _RunFields)
    else:
        try:
            fields = _fields.decode(bytes(run))
        except (msgspec.DecodeError, msgspec.ValidationError):  # (not an object: nothing to order by)
            fields = _RunFields(run_index="?")
    old = txn.get("run", p.run_id)
    previous = decode_run(old) if old is not None else None
    if previous is not None and previous[0] == p.session_id:
        key = previous[1]  # recorded again: the run keeps its place in its session
    else:
        seq = session_seq(txn, p.session_id)
        if seq is None:  # no session row: the in-process answer does not list it either
            if previous is not None:
                _drop(txn, p.run_id)
            return
        key = f"{seq:012d}|{p.session_id}|{txn.next_seq():012d}|{p.run_id}"
    if previous is not None and previous[1] != key:
        _drop(txn, p.run_id)
        previous = None
    row = (p.session_id, key, _score(fields), fields.agent_id, fields.team_id, fields.workflow_id, fields.status)
    txn.put("run", p.run_id, _enc.encode(row), (), ())
    txn.put("gr", key, p.run_id.encode(), _members(previous[0], previous[2], previous) if previous else (),
            _members(p.session_id, row[2], row))
