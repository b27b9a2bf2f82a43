"""Agno's other tables over the shared read index: the same answers as the in-process path,
orderings that equal a fresh fold, and reads that touch what they return.

The in-process path (the read models folded in this process, `shared_index=False`) hands
Agno's InMemoryDb/JsonDb code, or the adapter's SqliteDb-shaped code, every row of a table;
the indexed path hands them only the rows of a scope or a page. Two logs written by the same
script with the same clock — one per path — must answer every query alike, and the writes that
read rows to decide (a trace merge, a metrics calculation, a transcript append) must write
alike. Real files and a real redis-server; the row counts come from a subclass of the real
SqliteIndex that counts what each call reads.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from agno.db.schemas.evals import EvalRunRecord, EvalType
from agno.db.schemas.knowledge import KnowledgeRow
from agno.session import AgentSession
from agno.tracing.schemas import Span, Trace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adapters.agno.core as core
from adapters.agno import EventLogDb
from eventlog import Actor, EventStore, RecordDeleted, RecordUpserted, new_event, open_store
from eventlog.names import record_stream
from projections.index import Indexer, open_index
from projections.index.base import IndexTxn, Ranked
from projections.index.check import index_differences
from projections.index.sqlite import SqliteIndex, _SqliteTxn

T0 = datetime(2026, 11, 20, 9, 30, 0, 123456, tzinfo=timezone.utc)


def plain(value: Any) -> Any:
    """An answer as comparable data (Agno objects by their dicts)."""
    for attr in ("to_dict", "model_dump"):
        fn = getattr(value, attr, None)
        if callable(fn) and not isinstance(value, dict):
            return plain(fn())
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """A clock that repeats each second twice (ties on the second in every table), reset per log."""
    ticks: Iterator[int] = iter(())

    def reset() -> None:
        nonlocal ticks
        ticks = (1_800_000_000 + i // 2 for i in itertools.count())

    reset()
    monkeypatch.setattr(time, "time", lambda: float(next(ticks)))
    monkeypatch.setattr(time, "time_ns", lambda: next(ticks) * 1_000_000_000)
    return reset


def trace(i: int, rnd: random.Random, *, again: bool = False) -> Trace:
    start = T0 + timedelta(seconds=rnd.choice([0, 0, 1, 2, 3]) * 60 + i % 3, microseconds=(i * 7) % 4)  # ties
    end = start + timedelta(milliseconds=50 + i)
    return Trace(trace_id=f"t{i % 40 if again else i:03d}", name=rnd.choice(["Agent.run", "Team.run", "tool"]),
                 status=rnd.choice(["OK", "ERROR", "UNSET"]), start_time=start, end_time=end,
                 duration_ms=50 + i, total_spans=0, error_count=0, run_id=f"r{i % 7}",
                 session_id=rnd.choice([None, "s1", "s2", "s3"]), user_id=rnd.choice([None, "alice", "bob"]),
                 agent_id=rnd.choice([None, "planner", "coder"]), team_id=rnd.choice([None, "dev"]),
                 workflow_id=None, created_at=start)


def span(i: int, trace_id: str, rnd: random.Random) -> Span:
    start = T0 + timedelta(seconds=i)
    return Span(span_id=f"sp{i:04d}", trace_id=trace_id, parent_span_id=rnd.choice([None, f"sp{max(0, i - 1):04d}"]),
                name=rnd.choice(["llm", "search"]), span_kind="INTERNAL", status_code=rnd.choice(["OK", "ERROR"]),
                status_message=None, duration_ms=i, start_time=start, end_time=start,
                attributes={"openinference.span.kind": rnd.choice(["LLM", "TOOL"])}, created_at=start)


def write_everything(db: EventLogDb) -> list[Any]:
    """The same writes on any db (a fixed seed); returns what the writes that decide returned."""
    rnd = random.Random(16)
    out: list[Any] = []
    today = datetime.now(timezone.utc)
    for i in range(6):  # sessions from the last days (metrics are calculated for them)
        created = int((today - timedelta(days=i % 3, hours=i)).timestamp())
        db.upsert_session(AgentSession(session_id=f"s{i}", agent_id="planner", user_id=rnd.choice(["alice", "bob"]),
                                       created_at=created, updated_at=created))
    for i in range(60):
        db.upsert_trace(trace(i, rnd))
    for i in range(30):  # merges into stored traces
        db.upsert_trace(trace(i + 100, rnd, again=True))
    db.create_spans([span(i, f"t{i % 25:03d}", rnd) for i in range(120)])
    for i in range(12):
        db.create_eval_run(EvalRunRecord(run_id=f"e{i}", eval_type=[EvalType.ACCURACY, EvalType.PERFORMANCE][i % 4 == 1],
                                         eval_data={"i": i},
                                         agent_id=rnd.choice([None, "planner"]), model_id=rnd.choice(["m1", "m2"]),
                                         user_id=rnd.choice([None, "alice"]), name=f"eval {i}"))
    db.rename_eval_run("e3", "renamed")
    db.delete_eval_runs(["e5", "e7"])
    for i in range(12):
        created = 1_700_000_000 + i // 3
        db.upsert_knowledge_content(KnowledgeRow(id=f"k{i}", name=f"doc {i}", description="d",
                                                 user_id=rnd.choice([None, "alice", "bob"]),
                                                 linked_to=rnd.choice([None, "x", "y"]), created_at=created,
                                                 updated_at=rnd.choice([None, created + 5])))
    out.append(db.calculate_metrics())
    out.append(db.calculate_metrics())
    for i in range(10):
        db.upsert_learning(id=f"l{i}", learning_type=rnd.choice(["user_profile", "entity"]), content={"i": i},
                           user_id=rnd.choice([None, "alice", "bob"]), agent_id=rnd.choice([None, "a1"]),
                           namespace=rnd.choice(["user", "global"]))
    for i in range(8):
        db.upsert_compaction({"compaction_id": f"c{i}", "session_id": f"s{i % 3}", "user_id": "alice",
                              "summary": "s", "archived_messages": f"whale {i}", "created_at": 10 + i // 2})
    for i in range(10):
        db.upsert_tool_result({"result_id": f"tr{i}", "namespace": "ns", "path": f"/p/{i}", "session_id": f"s{i % 3}",
                               "user_id": "alice", "created_at": 5 + i // 3,
                               "expires_at": rnd.choice([None, 50, 50, 60, 70])})
    for k in range(3):
        db.append_transcript_entries("claude", "proj", f"cs{k}", [{"uuid": f"u{k}{j}"} for j in range(3)],
                                     agno_session_id=f"s{k}")
        db.append_transcript_entries("claude", "proj", f"cs{k}", [{"uuid": f"u{k}1"}, {"text": "x"}],
                                     agno_session_id=f"s{k}", subpath="sub" if k else None)
    db.delete_session("s2")
    return out


QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("get_traces", {}), ("get_traces", {"limit": 7, "page": 3}), ("get_traces", {"limit": 100}),
    ("get_traces", {"session_id": "s1"}), ("get_traces", {"session_id": "s1", "limit": 3, "page": 2}),
    ("get_traces", {"user_id": "alice", "limit": 5, "page": 2}), ("get_traces", {"agent_id": "coder"}),
    ("get_traces", {"run_id": "r3"}), ("get_traces", {"user_id": "bob", "status": "OK"}),
    ("get_traces", {"status": "ERROR", "limit": 3, "page": 2}), ("get_traces", {"status": "UNSET"}),
    ("get_traces", {"filter_expr": {"op": "EQ", "key": "status", "value": "OK"}, "limit": 4, "page": 2}),
    ("get_traces", {"start_time": T0 + timedelta(minutes=2), "limit": 50}),
    ("get_traces", {"end_time": T0 + timedelta(minutes=1), "limit": 50}),
    ("get_traces", {"filter_expr": {"op": "EQ", "key": "user_id", "value": "alice"}, "limit": 4, "page": 2}),
    ("get_traces", {"filter_expr": {"op": "AND", "conditions": [{"op": "EQ", "key": "user_id", "value": "bob"},
                                                                 {"op": "EQ", "key": "status", "value": "ERROR"}]}}),
    ("get_traces", {"filter_expr": {"op": "NEQ", "key": "agent_id", "value": "coder"}, "limit": 30}),
    ("get_traces", {"session_id": "", "user_id": "alice"}),
    ("get_trace", {"trace_id": "t005"}), ("get_trace", {"run_id": "r2"}), ("get_trace", {"trace_id": "t009", "run_id": "r1"}),
    ("get_trace", {"trace_id": "nope"}),
    ("get_trace_stats", {}), ("get_trace_stats", {"limit": 1, "page": 2}), ("get_trace_stats", {"limit": 2}),
    ("get_trace_stats", {"limit": None}), ("get_trace_stats", {"user_id": "alice"}), ("get_trace_stats", {"agent_id": "planner",
                                                                                             "limit": 2}),
    ("get_span", {"span_id": "sp0007"}), ("get_span", {"span_id": "nope"}),
    ("get_spans", {"trace_id": "t003"}), ("get_spans", {"parent_span_id": "sp0004"}), ("get_spans", {"limit": 9}),
    ("get_spans", {}), ("get_spans", {"trace_id": "t001", "parent_span_id": "sp0025"}),
    ("get_span_stats", {}), ("get_span_stats", {"agent_id": "coder"}), ("get_span_stats", {"name": "llm"}),
    ("get_eval_runs", {"deserialize": False}), ("get_eval_runs", {"limit": 3, "page": 2}),
    ("get_eval_runs", {"limit": 4, "page": 1, "sort_by": "created_at", "sort_order": "asc", "deserialize": False}),
    ("get_eval_runs", {"limit": 4, "page": 2, "sort_by": "updated_at", "sort_order": "desc"}),
    ("get_eval_runs", {"limit": 4, "sort_by": "name"}), ("get_eval_runs", {"agent_id": "planner", "limit": 2}),
    ("get_eval_runs", {"model_id": "m1", "user_id": "alice", "deserialize": False}),
    ("get_eval_runs", {"eval_type": [EvalType.ACCURACY], "limit": 3, "page": 2}),
    ("get_eval_runs", {"eval_type": [EvalType.PERFORMANCE], "deserialize": False}),
    ("get_eval_runs", {"eval_type": [EvalType.PERFORMANCE, EvalType.AGENT_AS_JUDGE], "model_id": "m1"}),
    ("get_eval_runs", {"eval_type": ["accuracy"], "agent_id": "planner", "sort_by": "created_at"}),
    ("get_eval_run", {"eval_run_id": "e3"}), ("get_eval_run", {"eval_run_id": "e5"}),
    ("get_eval_run", {"eval_run_id": "e1", "user_id": "bob"}),
    ("get_knowledge_contents", {}), ("get_knowledge_contents", {"limit": 5, "page": 2}),
    ("get_knowledge_contents", {"limit": 5, "sort_by": "created_at", "sort_order": "asc"}),
    ("get_knowledge_contents", {"limit": 4, "page": 2, "sort_by": "updated_at"}),
    ("get_knowledge_contents", {"limit": 4, "sort_by": "name"}), ("get_knowledge_contents", {"user_id": "alice"}),
    ("get_knowledge_contents", {"linked_to": "x", "user_id": "bob", "limit": 2}),
    ("get_knowledge_content", {"id": "k3"}), ("get_knowledge_content", {"id": "k3", "user_id": "zed"}),
    ("get_metrics", {}), ("get_metrics", {"user_id": "alice"}),
    ("get_metrics", {"starting_date": date.today() - timedelta(days=1)}),
    ("get_metrics", {"starting_date": date.today() - timedelta(days=9), "ending_date": date.today() - timedelta(days=1)}),
    ("get_learnings", {"user_id": "alice"}), ("get_learnings", {"learning_type": "entity", "limit": 2}),
    ("get_learning", {"learning_type": "user_profile", "user_id": "bob"}),
    ("list_learnings", {}), ("list_learnings", {"user_id": "alice", "include_global": True}),
    ("list_learnings", {"user_id": "bob", "limit": 2, "page": 1, "sort_by": "created_at"}),
    ("list_learnings", {"limit": 2, "page": 2}), ("list_learnings", {"limit": 3, "sort_by": "created_at"}),
    ("list_learnings", {"limit": 2, "page": 2, "sort_by": "created_at", "sort_order": "asc"}),
    ("list_learnings", {"limit": 3, "page": 1, "sort_by": "updated_at", "sort_order": "asc"}),
    ("list_learnings", {"limit": 2, "page": 3, "sort_by": "no_such_column"}),
    ("list_learnings", {"limit": 2, "sort_by": "learning_type", "sort_order": "asc"}),
    ("search_learnings", {"query": "i", "user_id": "alice"}), ("get_learnings_user_stats", {}),
    ("get_learnings_user_stats", {"learning_type": "entity"}),
    ("get_compactions_for_session", {"session_id": "s1"}), ("get_compactions_for_session", {"session_id": "s2"}),
    ("search_compactions", {"session_id": "s0", "query": "WHALE"}),
    ("get_tool_results_for_session", {"session_id": "s0", "limit": 2}),
    ("get_expired_tool_results", {"now": 55}), ("get_expired_tool_results", {"now": 1000}),
    ("get_transcript_entries", {"framework": "claude", "project_key": "proj", "session_id": "cs0"}),
    ("get_transcript_entries", {"framework": "claude", "project_key": "proj", "session_id": "cs1", "subpath": "sub"}),
    ("list_transcript_sessions", {"framework": "claude", "project_key": "proj"}),
    ("list_transcript_subpaths", {"framework": "claude", "project_key": "proj", "session_id": "cs1"}),
]


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_every_table_answers_as_the_in_process_path(kind: str, tmp_path: Path, request: pytest.FixtureRequest,
                                                    frozen_clock: Callable[[], None]) -> None:
    def url(name: str) -> str:
        if kind == "file":
            return str(tmp_path / name)
        return f"{request.getfixturevalue('redis_url')}?prefix={name}"

    indexed, in_process = EventLogDb(url("a")), EventLogDb(url("b"), shared_index=False)
    try:
        assert indexed.indexer is not None and in_process.indexer is None
        wrote = [write_everything(indexed)]
        frozen_clock()
        wrote.append(write_everything(in_process))
        assert plain(wrote[0]) == plain(wrote[1])
        assert wrote[0][0]  # metrics were calculated
        for method, kwargs in QUERIES:
            got, want = getattr(indexed, method)(**kwargs), getattr(in_process, method)(**kwargs)
            assert plain(got) == plain(want), (method, kwargs)
        assert index_differences(indexed.store, indexed.indexer.index) == []
    finally:
        indexed.close()
        in_process.close()


@pytest.mark.cluster
def test_the_tables_answer_alike_on_redis_cluster(cluster_url: str, frozen_clock: Callable[[], None]) -> None:
    """On a Cluster each table's rows and orderings live in its stream's partition."""
    store = open_store(cluster_url)
    indexed, in_process = EventLogDb(store=store), EventLogDb(store=store, shared_index=False)
    try:
        assert indexed.indexer is not None and indexed.indexer.index.partitions > 1
        write_everything(indexed)
        for method, kwargs in QUERIES:
            got, want = getattr(indexed, method)(**kwargs), getattr(in_process, method)(**kwargs)
            assert plain(got) == plain(want), (method, kwargs)
        assert index_differences(store, indexed.indexer.index) == []
    finally:
        indexed.close()
        in_process.close()
        store.close()


# --- the orderings equal a fresh fold ------------------------------------------------------------

def _record_op() -> st.SearchStrategy[tuple[str, Any]]:
    key = st.sampled_from(["a", "b", "c", "d"])
    user = st.sampled_from([None, "alice", "bob", 7])
    second = st.sampled_from([None, 0, 5, 5, 2**31 + 1, 3.5, "x"])
    start = st.sampled_from([T0.isoformat(), (T0 + timedelta(seconds=1)).isoformat(), "garbage", None])
    rows = {
        "traces": st.fixed_dictionaries({"trace_id": key, "session_id": st.sampled_from([None, "s1", "s2", "", 7, "7"]),
                                         "user_id": user, "start_time": start,
                                         "created_at": st.sampled_from([T0.isoformat(), "2026-11-20T09:31:00+00:00",
                                                                        None, 5, "garbage"])}),
        "evals": st.fixed_dictionaries({"run_id": key, "agent_id": user, "created_at": second,
                                        "updated_at": second}),
        "knowledge": st.fixed_dictionaries({"id": key, "user_id": user, "created_at": second}),
        "metrics": st.fixed_dictionaries({"date": st.sampled_from(["2026-01-01", "2026-01-02", "bad", None]),
                                          "user_id": user}),
        "tool_results": st.fixed_dictionaries({"namespace": st.sampled_from(["n", None]), "path": key,
                                               "session_id": user, "expires_at": second}),
        "transcripts": st.fixed_dictionaries({"framework": st.just("c"), "project_key": key, "session_id": key,
                                              "subpath": st.sampled_from([None, "", "x"]),
                                              "entry_uuid": st.sampled_from([None, "u1", "u2"]),
                                              "agno_session_id": user}),
        "learnings": st.fixed_dictionaries({"user_id": user, "learning_type": st.sampled_from(["p", "q"])}),
        "other": st.fixed_dictionaries({"v": user}),
    }
    table = st.sampled_from(sorted(rows))
    return table.flatmap(lambda t: st.one_of(
        st.tuples(st.just(t), key, rows[t]).map(lambda a: (record_stream(a[0]), RecordUpserted(table=a[0], key=a[1],
                                                                                               record=a[2]))),
        st.tuples(st.just(t), key).map(lambda a: (record_stream(a[0]), RecordDeleted(table=a[0], key=a[1])))))


@pytest.fixture(params=["file", "redis"])
def indexed_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], EventStore]]:
    opened: list[EventStore] = []
    counter = itertools.count()

    def make() -> EventStore:
        n = next(counter)
        url = str(tmp_path / f"log{n}") if request.param == "file" else f"{request.getfixturevalue('redis_url')}?prefix=t{n}"
        store = open_store(url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_record_op(), min_size=1, max_size=40), cuts=st.lists(st.integers(1, 40), max_size=3),
       commit_every=st.integers(1, 30))
def test_record_orderings_equal_a_fresh_fold(indexed_store: Callable[[], EventStore], ops: list[tuple[str, Any]],
                                             cuts: list[int], commit_every: int) -> None:
    store = indexed_store()
    index = open_index(store)
    assert index is not None
    try:
        indexer = Indexer(store, index, commit_every=commit_every)
        start = 0
        for cut in sorted(set(cuts)) + [len(ops)]:
            for stream, payload in ops[start:cut]:
                store.append(stream, [new_event(payload, actor=Actor(agent_id="x"))])
            start = max(start, cut)
            indexer.catch_up()
            assert index_differences(store, index) == []
    finally:
        index.close()


def test_a_wrong_record_ordering_is_found(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "log"))
    index = open_index(store)
    assert isinstance(index, SqliteIndex)
    try:
        store.append(record_stream("traces"), [new_event(RecordUpserted(
            table="traces", key="t1", record={"trace_id": "t1", "session_id": "s1", "start_time": T0.isoformat(),
                                              "created_at": T0.isoformat()}))])
        Indexer(store, index).catch_up()
        assert index_differences(store, index) == []
        with index._lock:
            index._conn.execute("UPDATE ord SET name='r|traces|session_id=s9|seq' WHERE name='r|traces|session_id=s1|seq'")
        found = index_differences(store, index)
        assert any("session_id=s1" in d for d in found) and any("session_id=s9" in d for d in found)
        with index._lock:  # a session's trace statistics that are not its traces'
            index._conn.execute("UPDATE rows SET key='s2' WHERE kind='tstat' AND key='s1'")
        found = index_differences(store, index)
        assert any("trace statistics of session 's1'" in d for d in found)
        assert any("trace statistics of session 's2'" in d for d in found)
    finally:
        index.close()
        store.close()


# --- reads touch what they return ------------------------------------------------------------------

class CountingTxn(_SqliteTxn):
    """The real SQLite transaction, counting what the fold reads into its index's count."""

    def get(self, kind: str, key: str) -> bytes | None:
        found = super().get(kind, key)
        self._index.read += found is not None  # type: ignore[attr-defined]
        return found

    def keys(self, ordering: str) -> list[str]:
        found = super().keys(ordering)
        self._index.read += len(found)  # type: ignore[attr-defined]
        return found


class CountingIndex(SqliteIndex):
    """The real SqliteIndex, counting the rows and ordering entries each call reads, the
    index updates' own reads included."""

    read = 0

    def begin(self, partition: int) -> IndexTxn:
        txn = super().begin(partition)
        txn.__class__ = CountingTxn  # (the same object: only the two reads are counted)
        return txn

    def get_many(self, kind: str, keys: list[str], partition: int | None = None) -> list[bytes | None]:
        found = super().get_many(kind, keys, partition)
        self.read += sum(1 for d in found if d is not None)
        return found

    def scan(self, kind: str) -> Iterator[tuple[str, bytes]]:
        rows = list(super().scan(kind))
        self.read += len(rows)
        return iter(rows)

    def page(self, ordering: str, *, desc: bool, offset: int, limit: int | None) -> list[Ranked]:
        found = super().page(ordering, desc=desc, offset=offset, limit=limit)
        self.read += len(found)
        return found

    def between(self, ordering: str, low: float, high: float, *, desc: bool, offset: int,
                limit: int | None) -> list[Ranked]:
        found = super().between(ordering, low, high, desc=desc, offset=offset, limit=limit)
        self.read += len(found)
        return found

    def page_containing(self, ordering: str, *, desc: bool, kind: str, needle: bytes,
                        among: Sequence[str] = (), whole: bool = False) -> list[Ranked]:
        found = super().page_containing(ordering, desc=desc, kind=kind, needle=needle, among=among, whole=whole)
        self.read += len(found)  # (the matches it hands back: the rows it tests stay in SQLite)
        return found

    def window_containing(self, ordering: str, *, desc: bool, kind: str, needle: bytes, offset: int,
                          limit: int | None, whole: bool = False) -> tuple[list[Ranked], int]:
        found, total = super().window_containing(ordering, desc=desc, kind=kind, needle=needle, offset=offset,
                                                 limit=limit, whole=whole)
        self.read += len(found)  # (the page it hands back: the rows it tests and counts stay in SQLite)
        return found, total


N = 3000


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EventLogDb, CountingIndex]]:
    """A file log with N traces (10 spans each), N evals, N knowledge rows, N tool results, N
    learnings and N compactions, written as a few big batches of record events."""
    path = tmp_path_factory.mktemp("big") / "log"
    store = open_store(str(path))

    def put(table: str, rows: list[tuple[str, dict[str, Any]]]) -> None:
        events = [new_event(RecordUpserted(table=table, key=k, record=r)) for k, r in rows]
        for i in range(0, len(events), 5000):
            store.append(record_stream(table), events[i:i + 5000])

    put("traces", [(f"t{i}", {"trace_id": f"t{i}", "name": "Agent.run", "status": "ERROR" if i % 50 == 7 else "OK",
                             "start_time": (T0 + timedelta(seconds=i)).isoformat(),
                             "end_time": (T0 + timedelta(seconds=i, milliseconds=5)).isoformat(), "duration_ms": 5,
                             "run_id": f"r{i}", "session_id": f"s{i % 300}", "user_id": f"u{i % 100}",
                             "agent_id": "planner", "team_id": None, "workflow_id": None,
                             "created_at": (T0 + timedelta(seconds=i)).isoformat()}) for i in range(N)])
    put("spans", [(f"sp{i}", {"span_id": f"sp{i}", "trace_id": f"t{i // 10}", "parent_span_id": None, "name": "llm",
                              "span_kind": "INTERNAL", "status_code": "OK", "status_message": None, "duration_ms": 1,
                              "start_time": T0.isoformat(), "end_time": T0.isoformat(), "attributes": {},
                              "created_at": T0.isoformat()}) for i in range(10 * N)])
    put("evals", [(f"e{i}", {"run_id": f"e{i}", "eval_type": "performance" if i % 10 == 3 else "accuracy",
                             "eval_data": {}, "agent_id": f"a{i % 50}",
                             "created_at": 1_700_000_000 + i, "updated_at": 1_700_000_000 + i}) for i in range(N)])
    put("knowledge", [(f"k{i}", {"id": f"k{i}", "name": f"doc {i}", "description": "d", "user_id": f"u{i % 100}",
                                 "created_at": 1_700_000_000 + i, "updated_at": None}) for i in range(N)])
    put("tool_results", [(f"r{i}", {"result_id": f"r{i}", "namespace": "ns", "path": f"/{i}", "session_id": f"s{i % 300}",
                                    "expires_at": 1_000 + i, "created_at": i}) for i in range(N)])
    put("learnings", [(f"l{i}", {"learning_id": f"l{i}", "learning_type": "user_profile", "user_id": f"u{i % 100}",
                                 "content": {"i": i}, "created_at": i, "updated_at": i}) for i in range(N)])
    put("compactions", [(f"c{i}", {"compaction_id": f"c{i}", "session_id": f"s{i % 300}", "created_at": i})
                        for i in range(N)])
    store.close()
    db, index = open_counting(path)
    yield db, index
    db.close()


def open_counting(path: Path) -> tuple[EventLogDb, CountingIndex]:
    """An EventLogDb on the file log at `path` whose index counts what it reads."""
    original = core.open_index
    core.open_index = lambda store, **kw: CountingIndex(store.path / "readmodels.sqlite3")  # type: ignore[assignment]
    try:
        db = EventLogDb(str(path))
    finally:
        core.open_index = original
    assert db.indexer is not None and isinstance(db.indexer.index, CountingIndex)
    return db, db.indexer.index


def reads(index: CountingIndex, call: Callable[[], Any]) -> tuple[int, Any]:
    index.read = 0
    result = call()
    return index.read, result


def test_trace_reads_and_the_trace_merge_touch_what_they_return(big: tuple[EventLogDb, CountingIndex]) -> None:
    db, index = big
    n, (page, total) = reads(index, lambda: db.get_traces(limit=20, page=5))
    assert total == N and [t.trace_id for t in page] == [f"t{N - 81 - i}" for i in range(20)]
    assert all(t.total_spans == 10 for t in page) and n <= 2 + 2 * 20 + 2 * 20 * 10  # the page (entries, rows, a neighbour each side), its spans
    n, (page, total) = reads(index, lambda: db.get_traces(session_id="s7", limit=5, page=2))
    assert total == N // 300 and len(page) == 5 and n <= 2 + 2 * 5 + 2 * 5 * 10
    n, (page, total) = reads(index, lambda: db.get_traces(
        filter_expr={"op": "AND", "conditions": [{"op": "EQ", "key": "user_id", "value": "u3"},
                                                 {"op": "EQ", "key": "status", "value": "OK"}]}, limit=10))
    assert total == N // 100 and n <= 2 * (N // 100) + 10 * 10 * 2  # the user's traces, then the page's spans
    n, (page, total) = reads(index, lambda: db.get_traces(status="ERROR", limit=10, page=2))  # AgentOS's status filter
    errors = [f"t{i}" for i in reversed(range(N)) if i % 50 == 7]
    assert total == len(errors) and [t.trace_id for t in page] == errors[10:20] and n <= 2 + 2 * 10 + 2 * 10 * 10
    n, (stats, total) = reads(index, lambda: db.get_trace_stats(limit=10, page=2))
    assert total == 300 and [s["session_id"] for s in stats] == [f"s{299 - 10 - i}" for i in range(10)]
    assert all(s["total_traces"] == N // 300 for s in stats) and n <= 2 + 2 * 10
    n, spans = reads(index, lambda: db.get_spans(trace_id="t42"))
    assert len(spans) == 10 and n <= 2 * 10
    n, found = reads(index, lambda: db.get_trace(trace_id="t42"))
    assert found.trace_id == "t42" and n <= 2 + 2 * 10
    end = T0 + timedelta(seconds=42, milliseconds=900)
    n, _ = reads(index, lambda: db.upsert_trace(Trace(
        trace_id="t42", name="Agent.run", status="ERROR", start_time=T0, end_time=end, duration_ms=0, total_spans=0,
        error_count=0, run_id="r42", session_id="s42", user_id="u42", agent_id="planner", team_id=None,
        workflow_id=None, created_at=T0)))
    assert n <= 8  # the trace, its session's statistics (in the fold too)
    merged = db.get_trace(trace_id="t42")
    assert merged.status == "ERROR" and merged.session_id == "s42"  # (its stored context is kept)
    assert merged.duration_ms == 900
    start = T0 + timedelta(seconds=N + 5)
    n, _ = reads(index, lambda: db.upsert_trace(Trace(  # a new trace of a session holding N // 300
        trace_id="fresh", name="Agent.run", status="OK", start_time=start, end_time=start, duration_ms=0,
        total_spans=0, error_count=0, run_id="rf", session_id="s7", user_id="u7", agent_id="planner", team_id=None,
        workflow_id=None, created_at=start)))
    assert n <= 8
    stats, _ = db.get_trace_stats(limit=1, page=1)
    assert stats[0]["session_id"] == "s7" and stats[0]["total_traces"] == N // 300 + 1


_LEARNING_TIMES = st.sampled_from([None, 0, 1, 2, 2, 3, 1.5])  # ties, missing, and a value no ordering holds


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.sampled_from(["l1", "l2", "l3", "l4", "l5", "l6", "l7"]),
                              _LEARNING_TIMES, _LEARNING_TIMES, st.booleans()), min_size=1, max_size=25),
       pages=st.lists(st.tuples(st.sampled_from([None, "created_at", "updated_at", "no_such_column"]),
                                st.sampled_from([None, "asc", "desc"]), st.integers(1, 4), st.integers(1, 4)),
                      min_size=1, max_size=6))
def test_a_learnings_page_from_its_ordering_is_the_sql_shaped_sort(
        tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, Any, Any, bool]],
        pages: list[tuple[str | None, str | None, int, int]]) -> None:
    """AgentOS's learnings page with no filter is read from the index's SQL-rule ordering of
    its sort (NULLs last descending, first ascending; `created_at` ties newest-inserted first
    descending, as SQLite walks its index back). It must be the page the adapter's
    SqliteDb-shaped sort of the whole table gives (the in-process path), whatever the ties,
    missing values, updates, deletes, and values no ordering can hold (those leave the page
    to that sort)."""
    base = tmp_path_factory.mktemp("learn")
    dbs = EventLogDb(str(base / "a")), EventLogDb(str(base / "b"), shared_index=False)
    try:
        for key, created, updated, delete in ops:
            payload: Any = (RecordDeleted(table="learnings", key=key) if delete else
                            RecordUpserted(table="learnings", key=key, record={
                                "learning_id": key, "learning_type": "p", "user_id": None, "content": {"k": key},
                                "created_at": created, "updated_at": updated}))
            for db in dbs:
                db.store.append(record_stream("learnings"), [new_event(payload, actor=Actor(agent_id="x"))])
        for sort_by, order, limit, page in pages:
            got, want = (db.list_learnings(limit=limit, page=page, sort_by=sort_by, sort_order=order) for db in dbs)
            assert got == want, (sort_by, order, limit, page)
    finally:
        for db in dbs:
            db.close()


def test_other_tables_read_their_page_or_their_scope(big: tuple[EventLogDb, CountingIndex]) -> None:
    db, index = big
    n, (rows, total) = reads(index, lambda: db.get_eval_runs(limit=20, page=3, deserialize=False))
    assert total == N and [r["run_id"] for r in rows] == [f"e{N - 41 - i}" for i in range(20)] and n <= 20 * 2
    n, rows = reads(index, lambda: db.get_eval_runs(agent_id="a7"))
    assert len(rows) == N // 50 and n <= 2 * (N // 50)
    n, rows = reads(index, lambda: db.get_eval_runs(eval_type=[EvalType.PERFORMANCE], limit=5))
    assert len(rows) == 5 and n <= 2 * (N // 10)  # (the type's rows, not the table)
    n, (rows, total) = reads(index, lambda: db.get_knowledge_contents(limit=10, page=1, sort_by="created_at",
                                                                      sort_order="asc"))
    assert total == N and [r.id for r in rows] == [f"k{i}" for i in range(10)] and n <= 10 * 2
    n, (rows, total) = reads(index, lambda: db.get_knowledge_contents(user_id="u5", limit=5))
    assert total == N // 100 and n <= 2 * (N // 100)
    n, rows = reads(index, lambda: db.get_tool_results_for_session("s9"))
    assert len(rows) == N // 300 and n <= 2 * (N // 300)
    n, rows = reads(index, lambda: db.get_expired_tool_results(1_004))
    assert [r["result_id"] for r in rows] == ["r0", "r1", "r2", "r3", "r4"] and n <= 2 * 200 + 10
    n, rows = reads(index, lambda: db.get_compactions_for_session("s9"))
    assert len(rows) == N // 300 and n <= 2 * (N // 300)
    n, rows = reads(index, lambda: db.get_learnings(user_id="u5"))
    assert len(rows) == N // 100 and n <= 2 * (N // 100)
    n, (rows, total) = reads(index, lambda: db.list_learnings(limit=100, page=2))  # AgentOS's learnings page
    assert total == N and [r["learning_id"] for r in rows] == [f"l{N - 101 - i}" for i in range(100)]
    assert n <= 2 * 100
    n, (rows, total) = reads(index, lambda: db.list_learnings(limit=10, sort_by="created_at", sort_order="asc"))
    assert total == N and [r["learning_id"] for r in rows] == [f"l{i}" for i in range(10)] and n <= 2 * 10
    n, _ = reads(index, lambda: db.upsert_tool_result({"result_id": "new", "namespace": "ns", "path": "/new",
                                                       "session_id": "s1", "expires_at": None}))
    assert n <= 5
    n, _ = reads(index, lambda: db.append_transcript_entries("claude", "p", "cs", [{"uuid": "a"}, {"uuid": "b"}],
                                                             agno_session_id="s1"))
    assert n <= 5


def test_the_statistics_pages_read_their_rows_not_the_table(big: tuple[EventLogDb, CountingIndex]) -> None:
    """AgentOS's span statistics, its learnings users page and a trace-sessions page over a
    time range read the index's aggregate rows (or the range's traces), not the N rows; the
    writes that keep the aggregates read a few rows each."""
    db, index = big
    n, (groups, total) = reads(index, lambda: db.get_span_stats())
    assert total == 1 and groups[0]["total_calls"] == 10 * N and groups[0]["max_duration_ms"] == 1 and n <= 3
    n, (groups, total) = reads(index, lambda: db.get_span_stats(start_time=T0 + timedelta(hours=1)))
    assert total == 0 and n == 0  # (every span started at T0: the range holds none)
    n, (groups, total) = reads(index, lambda: db.get_span_stats(start_time=T0, end_time=T0))
    assert total == 1 and groups[0]["total_calls"] == 10 * N  # (and those it holds are read)
    n, (users, total) = reads(index, lambda: db.get_learnings_user_stats(limit=10, page=2))
    users_page2 = users
    assert total == N // 30 and [u["user_id"] for u in users] == [f"u{89 - i}" for i in range(10)] and n <= 2 * 10
    assert users[0]["last_learning_updated_at"] == N - 100 + 89
    n, (users, _) = reads(index, lambda: db.get_learnings_user_stats(limit=5, sort_by="user_id", sort_order="asc"))
    assert [u["user_id"] for u in users] == sorted(f"u{i}" for i in range(100))[:5] and n <= 2 * 5
    n, (typed, total) = reads(index, lambda: db.get_learnings_user_stats(learning_type="user_profile", limit=10, page=2))
    assert total == N // 30 and typed == users_page2 and n <= 2 * 10
    start = T0 + timedelta(seconds=N - 50)
    n, (sessions, total) = reads(index, lambda: db.get_trace_stats(start_time=start, end_time=start + timedelta(seconds=20)))
    assert total == 21 and n <= 2 * (21 + 2)  # (the second each side: the range's traces, a neighbour each way)
    assert sessions[0]["session_id"] == f"s{(N - 30) % 300}" and sessions[0]["total_traces"] == 1
    n, _ = reads(index, lambda: db.create_spans([Span(
        span_id="sp-new", trace_id="t7", parent_span_id=None, name="llm", span_kind="INTERNAL", status_code="ERROR",
        status_message=None, duration_ms=40, start_time=T0, end_time=T0, attributes={}, created_at=T0)]))
    assert n <= 4  # (its row, if any; the group's statistics)
    groups, _ = db.get_span_stats()
    assert groups[0]["total_calls"] == 10 * N + 1 and groups[0]["max_duration_ms"] == 40 and groups[0]["error_count"] == 1
    n, _ = reads(index, lambda: db.upsert_learning(id="l-new", learning_type="user_profile", content={}, user_id="u5"))
    assert n <= 6
    users, _ = db.get_learnings_user_stats(limit=1)
    assert users[0]["user_id"] == "u5"  # (its newest update is now)
    n, _ = reads(index, lambda: db.delete_learning("l-new"))  # the latest left: the user's rows counted again
    assert n <= 6 + 2 * 2 * (N // 100 + 1)  # (for every type, and for its type)
    users, _ = db.get_learnings_user_stats(limit=1)
    assert users[0]["user_id"] == "u99"
