"""AgentOS trace search: `filter_expr` on `get_traces` / `get_trace_stats`, checked against
Agno's SqliteDb (which translates the same expressions to SQL) on the same traces.

AgentOS ANDs `user_id == <caller>` into the expression for non-admin callers, so a filter
that is ignored or evaluated loosely would show one user another's traces."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from agno.db.sqlite import SqliteDb
from agno.filters import AND, CONTAINS, EQ, GT, GTE, IN, LT, LTE, NEQ, NOT, OR, STARTSWITH
from agno.tracing.schemas import Trace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.agno import EventLogDb

T0 = datetime(2026, 11, 20, 9, 30, 0, 123456, tzinfo=timezone.utc)


def traces() -> list[Trace]:
    """Traces with missing fields, several users, statuses, names and times."""
    rows = []
    users = ["alice", "bob", None, "alice", "carol", "bob", None, "alice", "dave", "alice", "bob", "eve"]
    for i, user in enumerate(users):
        start = T0 + timedelta(minutes=7 * i, microseconds=1 + i)
        rows.append(Trace(
            trace_id=f"t{i:02d}", name=["Agent.run", "Team.run", "tool.call"][i % 3],
            status=["OK", "ERROR", "UNSET"][i % 3 if i % 4 else 0], start_time=start,
            end_time=start + timedelta(milliseconds=100 * i + 5), duration_ms=100 * i + 5, total_spans=1 + i % 4,
            error_count=i % 2, run_id=f"r{i}", session_id=f"s{i % 5}" if i % 6 else None, user_id=user,
            agent_id=["planner", "coder", None][i % 3], team_id="dev" if i % 4 == 1 else None,
            workflow_id=None, created_at=start))
    return rows


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> tuple[EventLogDb, SqliteDb]:
    base: Path = tmp_path_factory.mktemp("traces")
    ours = EventLogDb(str(base / "log"))
    sqlite = SqliteDb(db_file=str(base / "agno.sqlite"))
    for trace in traces():
        ours.upsert_trace(trace)
        sqlite.upsert_trace(trace)
    return ours, sqlite


def ids(result: tuple[list[Any], int]) -> tuple[list[str], int]:
    found, total = result
    return sorted(t.trace_id for t in found), total


FILTERS = [
    EQ("user_id", "alice"),
    NEQ("user_id", "alice"),  # rows without a user are not "not alice": SQL's NULL
    NOT(EQ("user_id", "alice")),
    OR(EQ("status", "ERROR"), EQ("agent_id", "coder")),
    AND(EQ("user_id", "bob"), NOT(EQ("status", "OK"))),
    IN("user_id", ["bob", "carol", "nobody"]),
    NOT(IN("agent_id", ["planner"])),
    GT("duration_ms", 500),
    LTE("duration_ms", 305),
    CONTAINS("name", "RUN"),  # case-insensitive, as SQL's lower(...) LIKE
    STARTSWITH("name", "team"),
    GTE("start_time", (T0 + timedelta(minutes=30)).isoformat()),
    LT("start_time", (T0 + timedelta(minutes=30)).astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat()),
    AND(EQ("user_id", "alice"), OR(EQ("session_id", "s1"), EQ("session_id", "s3"), NOT(EQ("team_id", "dev")))),
]


@pytest.mark.parametrize("expr", FILTERS, ids=[repr(f.to_dict()) for f in FILTERS])
def test_get_traces_with_a_filter_matches_sqlite(dbs: tuple[EventLogDb, SqliteDb], expr: Any) -> None:
    ours, sqlite = dbs
    want = ids(sqlite.get_traces(filter_expr=expr.to_dict(), limit=100))
    assert ids(ours.get_traces(filter_expr=expr.to_dict(), limit=100)) == want
    assert want[1] > 0 or expr.to_dict()["op"] == "NOT"  # the filters do select something


def test_the_user_scope_agentos_adds_keeps_other_users_out(dbs: tuple[EventLogDb, SqliteDb]) -> None:
    """What AgentOS sends for a non-admin caller: their user AND-ed into a filter that on its
    own would match other users' traces."""
    ours, _ = dbs
    scoped = {"op": "AND", "conditions": [{"op": "EQ", "key": "user_id", "value": "bob"},
                                          OR(EQ("status", "OK"), EQ("status", "ERROR")).to_dict()]}
    found, total = ours.get_traces(filter_expr=scoped, limit=100)
    assert total == len(found) > 0 and {t.user_id for t in found} == {"bob"}
    stats, _ = ours.get_trace_stats(filter_expr={"op": "EQ", "key": "user_id", "value": "bob"}, limit=100)
    assert stats and {s["user_id"] for s in stats} == {"bob"}


def test_trace_stats_with_a_filter_count_only_the_kept_traces(dbs: tuple[EventLogDb, SqliteDb]) -> None:
    ours, sqlite = dbs
    expr = NOT(EQ("status", "ERROR")).to_dict()
    mine, total = ours.get_trace_stats(filter_expr=expr, limit=100)
    theirs, their_total = sqlite.get_trace_stats(filter_expr=expr, limit=100)
    assert total == their_total
    assert ({s["session_id"]: s["total_traces"] for s in mine}
            == {s["session_id"]: s["total_traces"] for s in theirs})


def test_pages_count_the_filtered_traces(dbs: tuple[EventLogDb, SqliteDb]) -> None:
    ours, _ = dbs
    first, total = ours.get_traces(filter_expr=NEQ("status", "UNSET").to_dict(), limit=3, page=1)
    second, total2 = ours.get_traces(filter_expr=NEQ("status", "UNSET").to_dict(), limit=3, page=2)
    assert total == total2 > 3 and len(first) == 3
    assert not {t.trace_id for t in first} & {t.trace_id for t in second}


@pytest.mark.parametrize("bad", [
    {"op": "EQ", "key": "password", "value": "x"},  # not a trace column
    {"op": "LIKE", "key": "name", "value": "x"},
    {"op": "EQ", "key": "name"},
    {"op": "AND", "conditions": []},
    {"op": "NOT"},
    {"key": "name", "value": "x"},
    {"op": "IN", "key": "user_id", "values": "alice"},
    {"op": "NOT", "condition": {"op": "NOT", "condition": {"op": "NOT", "condition": {"op": "NOT", "condition": {
        "op": "NOT", "condition": {"op": "NOT", "condition": {"op": "NOT", "condition": {"op": "NOT", "condition": {
            "op": "NOT", "condition": {"op": "NOT", "condition": {"op": "NOT", "condition": {
                "op": "EQ", "key": "name", "value": "x"}}}}}}}}}}}},  # deeper than Agno allows
])
def test_a_malformed_filter_is_an_error_not_a_match_all(dbs: tuple[EventLogDb, SqliteDb], bad: dict[str, Any]) -> None:
    ours, _ = dbs
    with pytest.raises(ValueError):
        ours.get_traces(filter_expr=bad)
    with pytest.raises(ValueError):
        ours.get_trace_stats(filter_expr=bad)


_VALUES: dict[str, list[Any]] = {
    "user_id": ["alice", "bob", "carol", "zed"],
    "status": ["OK", "ERROR", "UNSET"],
    "agent_id": ["planner", "coder"],
    "session_id": ["s1", "s2", "s4"],
    "name": ["Agent.run", "Team.run", "tool"],
    "duration_ms": [5, 305, 700, 1105],
    "start_time": [(T0 + timedelta(minutes=m)).isoformat() for m in (0, 21, 40, 77)],
}
_leaf = st.sampled_from(sorted(_VALUES)).flatmap(lambda key: st.one_of(
    st.builds(lambda op, v: {"op": op, "key": key, "value": v},
              st.sampled_from(["EQ", "NEQ", "GT", "GTE", "LT", "LTE"]), st.sampled_from(_VALUES[key])),
    st.builds(lambda v: {"op": "IN", "key": key, "values": v},
              st.lists(st.sampled_from(_VALUES[key]), min_size=1, max_size=3)),
    st.builds(lambda op, v: {"op": op, "key": key, "value": v}, st.sampled_from(["CONTAINS", "STARTSWITH"]),
              st.sampled_from(["a", "RUN", "b", "o"])) if key not in ("duration_ms", "start_time") else st.nothing(),
))
_filters = st.recursive(_leaf, lambda inner: st.one_of(
    st.builds(lambda cs: {"op": "AND", "conditions": cs}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda cs: {"op": "OR", "conditions": cs}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda c: {"op": "NOT", "condition": c}, inner),
), max_leaves=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expr=_filters)
def test_any_filter_selects_what_sqlite_selects(dbs: tuple[EventLogDb, SqliteDb], expr: dict[str, Any]) -> None:
    ours, sqlite = dbs
    assert ids(ours.get_traces(filter_expr=expr, limit=100)) == ids(sqlite.get_traces(filter_expr=expr, limit=100))
