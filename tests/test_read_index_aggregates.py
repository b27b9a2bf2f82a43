"""The statistics the shared index keeps for Agno's aggregate reads — per session for
`get_trace_stats`, per (span name, kind) for `get_span_stats`, per user for
`get_learnings_user_stats` — and the trace creation-time ordering a `get_trace_stats` time
range reads: the same answers as the in-process path, whatever upserts and deletes came
before (a trace moving between sessions, a span or learning moving between groups or users,
the longest or latest one leaving), rows equal to a fresh fold, and after a reindex.

Both paths read one log (real files, a real redis-server, a Redis Cluster): `EventLogDb` over
the index, and `EventLogDb(shared_index=False)`, which folds the log in the process and hands
Agno's JsonDb (traces) or the adapter's SqliteDb-shaped code (spans, learnings) every row.
Values the index cannot keep exactly (times that are not ISO text, fractional durations, an
owner that is not text) are drawn in some examples: then the reader must fall back, and the
answers must still agree.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.agno import EventLogDb
from eventlog import Actor, EventStore, RecordDeleted, RecordUpserted, new_event, open_store
from eventlog.names import record_stream
from projections.index.check import index_differences
from tests.test_read_index_tables import T0, plain

ISO = [T0.isoformat(), (T0 + timedelta(seconds=1)).isoformat(), (T0 + timedelta(minutes=40)).isoformat(),
       "2026-11-20T15:00:00+05:00", "2026-11-20T09:30:00Z", "2026-11-21T09:30:00.5+00:00",
       "2026-11-19T23:59:59-08:00", (T0 + timedelta(days=3)).isoformat()]
ODD_TIMES = [None, "garbage", 5, "2026-11-20 09:30:00+00:00", ""]


def _row(table: str, odd: bool) -> st.SearchStrategy[dict[str, Any]]:
    times = st.sampled_from(ISO + (ODD_TIMES if odd else []))
    if table == "traces":
        return st.fixed_dictionaries({
            "session_id": st.sampled_from([None, "s1", "s2", "s3", ""]), "user_id": st.sampled_from([None, "alice", "bob"]),
            "agent_id": st.sampled_from([None, "a1"]), "created_at": times, "start_time": st.sampled_from(ISO),
            "end_time": st.just(T0.isoformat()), "name": st.just("Agent.run"), "status": st.just("OK"),
            "duration_ms": st.just(5), "total_spans": st.just(0), "error_count": st.just(0)})
    if table == "spans":
        kind = st.sampled_from(["LLM", "LLM", "LLM", "TOOL", None] + ([["x"], 3] if odd else []))
        return st.fixed_dictionaries({  # (few groups, so that groups hold several spans)
            "trace_id": st.sampled_from(["t0", "t1"]),
            "name": st.sampled_from(["llm", "llm", "llm", "search", None] + ([5] if odd else [])),
            "attributes": st.one_of(st.fixed_dictionaries({"openinference.span.kind": kind}), st.just({}),
                                    st.just(None)),
            "duration_ms": st.sampled_from([None, 0, 5, 7, 7, 12] + ([2.5, True] if odd else [])),
            "status_code": st.sampled_from(["OK", "ERROR", None]),
            "start_time": st.sampled_from([None] + ISO + ([5, "garbage"] if odd else []))})
    return st.fixed_dictionaries({
        "user_id": st.sampled_from([None, "alice", "bob", "carol", ""] + ([7] if odd else [])),
        "updated_at": st.sampled_from([None, 3, 5, 5, 9, 12] + ([3.5, 2**31 + 1] if odd else [])),
        "learning_type": st.sampled_from(["user_profile", "entity"] + ([5] if odd else [])), "content": st.just({"x": 1}),
        "created_at": st.just(1)})


_KEYS = {"traces": ("trace_id", "t"), "spans": ("span_id", "p"), "learnings": ("learning_id", "l")}


def _ops(odd: bool) -> st.SearchStrategy[list[tuple[str, Any]]]:
    def op(table: str) -> st.SearchStrategy[tuple[str, Any]]:
        column, prefix = _KEYS[table]
        key = st.sampled_from([f"{prefix}{i}" for i in range(6 if table == "spans" else 4)])
        upsert = st.tuples(key, _row(table, odd)).map(
            lambda a: (record_stream(table), RecordUpserted(table=table, key=a[0], record={column: a[0], **a[1]})))
        delete = key.map(lambda k: (record_stream(table), RecordDeleted(table=table, key=k)))
        return st.one_of(upsert, upsert, delete)

    return st.lists(st.sampled_from(sorted(_KEYS)).flatmap(op), min_size=12, max_size=60)


TRACE_PAGES: list[tuple[str, dict[str, Any]]] = [
    ("get_traces", {}), ("get_traces", {"limit": 2, "page": 2}), ("get_traces", {"session_id": "s1", "limit": 1})]
"""(Asked only of logs whose traces Agno can load: over rows it cannot, JsonDb's page fails
and answers nothing, where the index still counts the rows.)"""
QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("get_trace_stats", {}), ("get_trace_stats", {"limit": 1, "page": 2}), ("get_trace_stats", {"limit": None}),
    ("get_trace_stats", {"start_time": T0}), ("get_trace_stats", {"start_time": T0 + timedelta(seconds=1)}),
    ("get_trace_stats", {"end_time": T0 + timedelta(minutes=40), "limit": 2}),
    ("get_trace_stats", {"start_time": T0 - timedelta(hours=6), "end_time": T0 + timedelta(hours=6)}),
    ("get_trace_stats", {"start_time": T0.replace(tzinfo=None)}),  # (JsonDb compares the texts)
    ("get_trace_stats", {"start_time": T0, "user_id": "alice"}),
    ("get_trace_stats", {"start_time": T0, "filter_expr": {"op": "NEQ", "key": "agent_id", "value": "a1"}}),
    ("get_span_stats", {}), ("get_span_stats", {"limit": 1, "page": 2}), ("get_span_stats", {"limit": None}),
    ("get_span_stats", {"span_type": "LLM"}), ("get_span_stats", {"name": "llm"}),
    ("get_span_stats", {"start_time": T0}), ("get_span_stats", {"start_time": T0 + timedelta(seconds=1), "limit": 2}),
    ("get_span_stats", {"end_time": T0 + timedelta(minutes=40), "sort_by": "last_called_at"}),
    ("get_span_stats", {"start_time": T0 - timedelta(hours=6), "end_time": T0 + timedelta(hours=6),
                        "span_type": "LLM"}),
    ("get_span_stats", {"start_time": T0.replace(tzinfo=None)}),
    *[("get_span_stats", {"sort_by": column, "sort_order": order})
      for column in ("total_calls", "avg_duration_ms", "max_duration_ms", "error_count", "last_called_at",
                     "p95_duration_ms") for order in ("asc", "desc")],
    ("get_learnings_user_stats", {}), ("get_learnings_user_stats", {"limit": 1, "page": 2}),
    ("get_learnings_user_stats", {"limit": 2}), ("get_learnings_user_stats", {"limit": None, "page": 3}),
    ("get_learnings_user_stats", {"sort_order": "asc"}), ("get_learnings_user_stats", {"sort_order": "asc", "limit": 2,
                                                                                       "page": 2}),
    ("get_learnings_user_stats", {"sort_by": "user_id"}),
    ("get_learnings_user_stats", {"sort_by": "user_id", "sort_order": "asc", "limit": 2, "page": 2}),
    ("get_learnings_user_stats", {"user_id": "alice"}), ("get_learnings_user_stats", {"learning_type": "entity"}),
    ("get_learnings_user_stats", {"learning_type": "user_profile", "sort_by": "user_id", "limit": 2, "page": 2}),
    ("get_learnings_user_stats", {"learning_type": "user_profile", "sort_order": "asc", "limit": 3}),
    ("get_learnings_user_stats", {"learning_type": "nope"}),
]


def outcome(db: EventLogDb, method: str, kwargs: dict[str, Any]) -> Any:
    """An answer as data, or the kind of error raised (both paths must fail alike)."""
    try:
        return plain(getattr(db, method)(**kwargs))
    except Exception as exc:
        return f"raised {type(exc).__name__}"


def answers_agree(indexed: EventLogDb, in_process: EventLogDb, pages: bool = True) -> None:
    for method, kwargs in QUERIES + (TRACE_PAGES if pages else []):
        assert outcome(indexed, method, kwargs) == outcome(in_process, method, kwargs), (method, kwargs)


@pytest.fixture(params=["file", "redis", pytest.param("cluster", marks=pytest.mark.cluster)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], EventStore]]:
    opened: list[EventStore] = []
    counter = itertools.count()

    def make() -> EventStore:
        n = next(counter)
        if request.param == "file":
            url = str(tmp_path / f"log{n}")
        else:
            base = request.getfixturevalue("redis_url" if request.param == "redis" else "cluster_url")
            url = f"{base}{'&' if '?' in base else '?'}prefix=agg{n}"
        store = open_store(url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.booleans().flatmap(_ops), cuts=st.lists(st.integers(1, 60), max_size=3))
def test_the_kept_statistics_answer_as_the_in_process_path(make_store: Callable[[], EventStore],
                                                          ops: list[tuple[str, Any]], cuts: list[int]) -> None:
    store = make_store()
    loadable = all(p.record["created_at"] in ISO for _, p in ops if isinstance(p, RecordUpserted) and p.table == "traces")
    indexed, in_process = EventLogDb(store=store), EventLogDb(store=store, shared_index=False)
    try:
        assert indexed.indexer is not None and in_process.indexer is None
        start = 0
        for cut in sorted(set(cuts)) + [len(ops)]:
            for stream, payload in ops[start:cut]:
                store.append(stream, [new_event(payload, actor=Actor(agent_id="x"))])
            start = max(start, cut)
            answers_agree(indexed, in_process, loadable)
            assert index_differences(store, indexed.indexer.index) == []
    finally:
        indexed.close()
        in_process.close()


def test_the_statistics_survive_a_reindex_and_follow_the_adapter_writes(make_store: Callable[[], EventStore]) -> None:
    """Writes through the adapter (traces merged and moved between sessions, spans replaced,
    learnings updated, moved to another user and deleted), then `eventlog reindex`'s rebuild
    beside the live index: the same answers before and after, and rows equal to a fresh fold."""
    from agno.tracing.schemas import Span, Trace

    store = make_store()
    indexed, in_process = EventLogDb(store=store), EventLogDb(store=store, shared_index=False)
    try:
        assert indexed.indexer is not None
        for i in range(12):
            start = T0 + timedelta(minutes=i)
            indexed.upsert_trace(Trace(trace_id=f"t{i % 8}", name="Agent.run", status="OK", start_time=start,
                                       end_time=start, duration_ms=i, total_spans=0, error_count=0, run_id=f"r{i}",
                                       session_id=f"s{i % 3}", user_id="alice", agent_id="a1", team_id=None,
                                       workflow_id=None, created_at=start))
        spans = [Span(span_id=f"p{i % 9}", trace_id=f"t{i % 8}", parent_span_id=None, name=["llm", "tool"][i % 2],
                      span_kind="INTERNAL", status_code=["OK", "ERROR"][i % 3 == 0], status_message=None,
                      duration_ms=(i * 7) % 11, start_time=T0 + timedelta(seconds=i), end_time=T0,
                      attributes={"openinference.span.kind": ["LLM", "TOOL"][i % 3 == 1]}, created_at=T0)
                 for i in range(14)]
        indexed.create_spans(spans)
        for i in range(8):
            indexed.upsert_learning(id=f"l{i % 5}", learning_type="user_profile", content={"i": i},
                                    user_id=["alice", "bob", "carol"][i % 3])
        indexed.delete_learning("l1")
        answers_agree(indexed, in_process)
        stats, total = indexed.get_learnings_user_stats()
        assert total == 3 and {s["user_id"] for s in stats} == {"alice", "bob", "carol"}
        span_stats, groups = indexed.get_span_stats(limit=None)
        assert groups == 4 and sum(s["total_calls"] for s in span_stats) == 9
        assert index_differences(store, indexed.indexer.index) == []
        indexed.indexer.reindex()
        answers_agree(indexed, in_process)
        assert index_differences(store, indexed.indexer.index) == []
    finally:
        indexed.close()
        in_process.close()


def test_sessions_sorted_by_a_column_they_do_not_have(tmp_path: Path) -> None:
    """`get_sessions(sort_by=...)` with a key the session dicts lack (AgentOS passes any
    `sort_by` it is given, e.g. `session_name`) keeps InMemoryDb's order — none, the table's —
    read as the page with no sort after one look at the first match; a key the first match
    has (`agent_id`) is still sorted in the process. The same answers as the in-process path;
    the unsorted page reads its rows, not every session."""
    from agno.session import AgentSession, WorkflowSession

    import adapters.agno.core as core
    from tests.test_read_index_tables import CountingIndex, reads

    path = tmp_path / "log"
    original = core.open_index
    core.open_index = lambda store, **kw: CountingIndex(store.path / "readmodels.sqlite3")  # type: ignore[assignment]
    try:
        indexed = EventLogDb(str(path))
    finally:
        core.open_index = original
    in_process = EventLogDb(str(path), shared_index=False)
    try:
        for i in range(300):
            if i % 7 == 3:
                indexed.upsert_session(WorkflowSession(session_id=f"w{i}", workflow_id="wf", user_id=f"u{i % 3}",
                                                       created_at=1_800_000_000 + i, updated_at=1_800_000_000 + i))
            else:
                indexed.upsert_session(AgentSession(session_id=f"s{i}", agent_id=["a", "b"][i % 2], user_id=f"u{i % 3}",
                                                    session_data={"session_name": f"n{i % 5}"},
                                                    created_at=1_800_000_000 + i, updated_at=1_800_000_000 + i))
        for kwargs in ({"sort_by": "session_name"}, {"sort_by": "session_name", "sort_order": "asc", "limit": 5,
                                                      "page": 3},
                       {"sort_by": "nonsense", "user_id": "u1", "limit": 4}, {"sort_by": "agent_id", "limit": 6},
                       {"sort_by": "workflow_id", "session_type": "workflow", "limit": 3},
                       {"sort_by": "agent_id", "session_type": "workflow", "limit": 3},
                       {"sort_by": "session_name", "session_name": "n3", "limit": 3, "page": 2}):
            got = indexed.get_sessions(deserialize=False, **kwargs)
            want = in_process.get_sessions(deserialize=False, **kwargs)
            assert plain(got) == plain(want), kwargs
        assert indexed.indexer is not None and isinstance(indexed.indexer.index, CountingIndex)
        index = indexed.indexer.index
        unsorted, _ = reads(index, lambda: indexed.get_sessions(limit=10, page=4, deserialize=False))
        n, (rows, total) = reads(index, lambda: indexed.get_sessions(sort_by="session_name", limit=10, page=4,
                                                                    deserialize=False))
        assert total == 300 and [r["session_id"] for r in rows] == [
            f"{'w' if i % 7 == 3 else 's'}{i}" for i in range(30, 40)]
        assert n <= unsorted + 2 * 3 + 1 and n < 300  # (the unsorted page's reads, and the first match's)
    finally:
        indexed.close()
        in_process.close()
