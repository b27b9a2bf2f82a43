"""Agno's other tables as they grow: traces and spans, EventLogDb beside Agno's SqliteDb.

With tracing on, every agent run calls `upsert_trace` (and `create_spans`), and AgentOS's
traces page calls `get_traces` and `get_spans`: these should cost what they touch, not the
number of traces stored (issue #16). Each db is loaded through its public Agno methods (one
`upsert_trace` and one `create_spans` of SPANS spans per trace, PER_SESSION traces per session), grown
through the sizes, and at each size every call is timed REPEATS times (the median) by a second
db opened on the same log after loading (another worker's view of it). (The loading db itself
reads what it wrote lately from the rows its last commits left, on Redis up to 20,000 of them:
in the loading process a small table answers a read or a merge with no round trip and a large
one with its one or two — a step at that bound, not growth, which the 1,000-vs-10,000 ratio
would show as if it were.) a page of 20 traces (newest first), a session's traces, one trace's spans,
one trace, and `upsert_trace` merging into a stored trace and adding a new one; and the
statistics pages AgentOS shows: 20 trace sessions (`get_trace_stats`), the sessions of the
traces created in one minute, the span statistics (`get_span_stats`, a few span names) and 20
users of the learnings (`get_learnings_user_stats`, one learning per trace, 5 per user).
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from benchmarks._common import Result, Settings, fmt_ms, redis_server, tempdir

SIZES_FULL = [1_000, 10_000]
SIZES_QUICK = [200, 1_000]
SPANS = 3
PER_SESSION = 10  # traces per session (a session's traces stay 10 as the table grows)
REPEATS = 7
KINDS = ["EventLogDb(file)", "EventLogDb(redis)", "SqliteDb"]
CALLS = ["page", "session", "spans", "trace", "merge", "new", "tstats", "trange", "sstats", "lusers"]
HEADINGS = {"page": "get_traces page (20)", "session": "a session's traces", "spans": "a trace's spans",
            "trace": "get_trace", "merge": "upsert_trace (merge)", "new": "upsert_trace (new)",
            "tstats": "trace sessions (20)", "trange": "trace sessions, 1 min", "sstats": "get_span_stats",
            "lusers": "learnings users (20)"}
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def make_trace(i: int, *, end_ms: int = 50) -> Any:
    from agno.tracing.schemas import Trace

    start = T0 + timedelta(seconds=i)
    return Trace(trace_id=f"trace-{i:06d}", name="Agent.run", status="OK", start_time=start,
                 end_time=start + timedelta(milliseconds=end_ms), duration_ms=end_ms, total_spans=0, error_count=0,
                 run_id=f"run-{i:06d}", session_id=f"sess-{i // PER_SESSION:05d}", user_id=f"user-{i % 37:03d}",
                 agent_id="assistant", team_id=None, workflow_id=None, created_at=start)


def make_spans(i: int) -> list[Any]:
    from agno.tracing.schemas import Span

    start = T0 + timedelta(seconds=i)
    return [Span(span_id=f"span-{i:06d}-{k}", trace_id=f"trace-{i:06d}", parent_span_id=None,
                 name=("llm", "tool", "agent")[k % 3],
                 span_kind="INTERNAL", status_code="OK", status_message=None, duration_ms=10, start_time=start,
                 end_time=start, attributes={"openinference.span.kind": "LLM"}, created_at=start)
            for k in range(SPANS)]


def make_db(kind: str, where: Any, url: str | None) -> Any:
    if kind == "SqliteDb":
        from agno.db.sqlite import SqliteDb

        return SqliteDb(db_file=str(where / "agno.sqlite"))
    from adapters.agno import EventLogDb

    if kind == "EventLogDb(file)":
        return EventLogDb(f"file://{where / 'eventlog'}?fsync=never")
    return EventLogDb(f"{url}?prefix=eltables")


def load(db: Any, start: int, end: int) -> None:
    for i in range(start, end):
        db.upsert_trace(make_trace(i))
        db.create_spans(make_spans(i))
        db.upsert_learning(id=f"learning-{i:06d}", learning_type="user_profile", content={"i": i},
                           user_id=f"user-{i // 5:05d}")


def measure(db: Any, n: int, fresh: int) -> dict[str, float]:
    """Each call's median over REPEATS; `fresh` numbers the new traces so none repeats."""
    times: dict[str, list[float]] = {c: [] for c in CALLS}
    # One untimed round of the reads first: a newly opened db's first calls fill its own
    # caches (SQLite's page cache, its connection's prepared statements) at any size.
    warm = n // 3
    db.get_traces(limit=20, page=1)
    db.get_traces(session_id=f"sess-{warm // PER_SESSION:05d}", limit=20, page=1)
    db.get_spans(trace_id=f"trace-{warm:06d}")
    db.get_trace(trace_id=f"trace-{warm:06d}")
    db.get_trace_stats(limit=20, page=1)
    db.get_span_stats()
    db.get_learnings_user_stats(limit=20, page=1)
    for r in range(REPEATS):
        mid = (n // 2 + r * 7) % n
        checks = {
            "page": lambda: db.get_traces(limit=20, page=1),
            "session": lambda: db.get_traces(session_id=f"sess-{mid // PER_SESSION:05d}", limit=20, page=1),
            "spans": lambda: db.get_spans(trace_id=f"trace-{mid:06d}"),
            "trace": lambda: db.get_trace(trace_id=f"trace-{mid:06d}"),
            "merge": lambda: db.upsert_trace(make_trace(mid, end_ms=60 + r)),
            "new": lambda: db.upsert_trace(make_trace(fresh + r)),
            "tstats": lambda: db.get_trace_stats(limit=20, page=1),
            "trange": lambda: db.get_trace_stats(start_time=T0 + timedelta(seconds=mid),
                                                     end_time=T0 + timedelta(seconds=mid + 59), limit=20, page=1),
            "sstats": lambda: db.get_span_stats(),
            "lusers": lambda: db.get_learnings_user_stats(limit=20, page=1),
        }
        for call, fn in checks.items():
            start = time.perf_counter()
            got = fn()
            times[call].append(time.perf_counter() - start)
            if call == "page":
                assert len(got[0]) == 20 and got[1] >= n, got[1]
            elif call == "spans":
                assert len(got) == SPANS, len(got)
            elif call in ("tstats", "lusers"):
                assert len(got[0]) == 20, (call, len(got[0]))
            elif call == "sstats":
                assert len(got[0]) == min(SPANS, 3), got
    return {c: statistics.median(v) for c, v in times.items()}


def fmt_x(ratio: float, target: float) -> str:
    return f"{ratio:.2f}x" + (" ok" if ratio <= target else " MISSED")


def run(settings: Settings) -> Result:
    sizes = SIZES_QUICK if settings.quick else SIZES_FULL
    first, last = sizes[0], sizes[-1]
    result = Result("tables", f"Traces and spans to {last:,} traces ({SPANS} spans each, {PER_SESSION} per session): "
                              f"median of {REPEATS} calls by a second db on the loaded log", ["db", "traces"]
                    + [HEADINGS[c] for c in CALLS])
    figures: dict[tuple[str, int], dict[str, float]] = {}
    with redis_server() as server, tempdir() as base:
        for kind in KINDS:
            where = base / kind.replace("(", "-").replace(")", "")
            where.mkdir()
            db = make_db(kind, where, server.url)
            have = 0
            try:
                for size in sizes:
                    load(db, have, size)
                    have = size
                    reader = make_db(kind, where, server.url)  # (another worker's view of the log)
                    try:
                        figures[kind, size] = measure(reader, size, 10 * last + 100 * len(figures))
                    finally:
                        if hasattr(reader, "close"):
                            reader.close()
                    have += REPEATS  # (the new traces measure() added)
            finally:
                if hasattr(db, "close"):
                    db.close()
    for kind in KINDS:
        for size in sizes:
            result.rows.append([kind, f"{size:,}"] + [fmt_ms(figures[kind, size][c]) for c in CALLS])
        low, high = figures[kind, first], figures[kind, last]
        result.rows.append([f"{kind}: {last:,} vs {first:,}", "ratio"] + [fmt_x(high[c] / low[c], 1.5) for c in CALLS])
        if kind != "SqliteDb":
            sqlite = figures["SqliteDb", last]
            result.rows.append([f"{kind} / SqliteDb at {last:,}", "ratio"]
                               + [f"{high[c] / sqlite[c]:.2f}x" for c in CALLS])
    result.notes.append(f"target (issue #16): each call at {last:,} traces <= 1.5x its {first:,}-trace figure "
                        f"('ok'/'MISSED'); the file store runs with fsync=never, SqliteDb with its defaults")
    return result
