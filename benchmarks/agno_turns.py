"""Agno per-turn cost as a conversation grows to 1,000 turns, EventLogDb vs Agno's own dbs.

Each measured turn makes the calls a real `Agent.run` makes (agno 3.1: `get_session` of the
whole session, `upsert_session` of the row without runs, `upsert_run` of the new run) plus a
memory upsert and a `get_user_memories` query. Between measured turns the conversation grows
through `upsert_session` + `upsert_run` only (so slow backends finish in minutes). Cold: a new
process opens the existing data and times its first `get_session`. A second table times
`get_user_memories(user_id=...)` over 10k memories of 100 users.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import Result, Settings, fmt_ms, redis_server, tempdir

CHECKPOINTS_FULL = [10, 100, 500, 1000]
CHECKPOINTS_QUICK = [8, 20]
SAMPLES = 7


def make_db(kind: str, where: Path, redis_url: str | None) -> Any:
    if kind == "InMemoryDb":
        from agno.db.in_memory import InMemoryDb

        return InMemoryDb()
    if kind == "JsonDb":
        from agno.db.json import JsonDb

        return JsonDb(db_path=str(where / "json"))
    if kind == "SqliteDb":
        from agno.db.sqlite import SqliteDb

        return SqliteDb(db_file=str(where / "agno.sqlite"))
    if kind == "RedisDb":
        from agno.db.redis import RedisDb

        return RedisDb(db_url=redis_url, db_prefix="agno")
    from adapters.agno import EventLogDb

    if kind == "EventLogDb(file)":
        return EventLogDb(str(where / "eventlog"))
    return EventLogDb(f"{redis_url}?prefix=elbench")


def make_run(turn: int, session_id: str) -> Any:
    from agno.models.message import Message
    from agno.run.agent import RunOutput
    from agno.run.base import RunStatus

    return RunOutput(
        run_id=f"{session_id}-run-{turn}", agent_id="planner", session_id=session_id, user_id="alice",
        content=f"Answer {turn}: " + "lorem ipsum " * 20, status=RunStatus.completed,
        messages=[Message(role="user", content=f"Question {turn}? " + "dolor " * 15),
                  Message(role="assistant", content=f"Answer {turn}: " + "lorem ipsum " * 20)],
    )


def one_turn(db: Any, turn: int, session_id: str, *, read: bool = True, memory: bool = True) -> dict[str, float]:
    from agno.db.base import SessionType
    from agno.db.schemas.memory import UserMemory
    from agno.session import AgentSession

    t: dict[str, float] = {}
    start = time.perf_counter()
    session = db.get_session(session_id=session_id, session_type=SessionType.AGENT, user_id="alice") if read else None
    t["get_session"] = time.perf_counter() - start
    if session is None:
        session = AgentSession(session_id=session_id, agent_id="planner", user_id="alice",
                               session_data={"session_state": {"turn": 0}}, runs=[])
    run = make_run(turn, session_id)
    session.upsert_run(run=run)
    session.session_data = {**(session.session_data or {}), "session_state": {"turn": turn}}
    start = time.perf_counter()
    db.upsert_session(session)
    t["upsert_session"] = time.perf_counter() - start
    start = time.perf_counter()
    db.upsert_run(run=run, session_id=session_id, user_id="alice", run_index=turn)
    t["upsert_run"] = time.perf_counter() - start
    if memory:
        start = time.perf_counter()
        db.upsert_user_memory(UserMemory(memory=f"fact {turn}", memory_id=f"m{turn % 50}", user_id="alice",
                                         topics=["bench"]))
        db.get_user_memories(user_id="alice")
        t["memory"] = time.perf_counter() - start
    t["turn"] = sum(t.values())
    return t


COLD_SCRIPT = """
import json, sys, time
from pathlib import Path
from benchmarks.agno_turns import make_db
from agno.db.base import SessionType
start = time.perf_counter()
db = make_db(sys.argv[1], Path(sys.argv[2]), sys.argv[3] or None)
opened = time.perf_counter() - start
start = time.perf_counter()
session = db.get_session(session_id="bench", session_type=SessionType.AGENT, user_id="alice")
first = time.perf_counter() - start
print(json.dumps({"open": opened, "get_session": first, "runs": len(session.runs or [])}))
"""


def cold(kind: str, where: Path, redis_url: str | None) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", COLD_SCRIPT, kind, str(where), redis_url or ""], capture_output=True,
                         text=True, timeout=600, cwd=str(Path(__file__).resolve().parents[1]), check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(settings: Settings) -> Result:
    checkpoints = CHECKPOINTS_QUICK if settings.quick else CHECKPOINTS_FULL
    kinds = ["EventLogDb(file)", "EventLogDb(redis)", "InMemoryDb", "JsonDb", "SqliteDb", "RedisDb"]
    cols = ["backend"] + [f"turn {c}" for c in checkpoints] + [f"{checkpoints[-1]}/{checkpoints[0]}",
                                                               f"cold get_session @{checkpoints[-1]}"]
    result = Result("agno_turns", "Agno per turn (get_session + upsert_session + upsert_run + memory upsert/query; "
                                  "median of 7 turns)", cols)
    detail = Result("agno_turns_detail", "", ["backend", "turn", "get_session", "upsert_session", "upsert_run",
                                              "memory"])
    with redis_server() as server, tempdir() as base:
        for kind in kinds:
            where = base / kind.replace("(", "-").replace(")", "")
            where.mkdir()
            db = make_db(kind, where, server.url)
            costs: dict[int, float] = {}
            turn = 0
            for checkpoint in checkpoints:
                while turn < checkpoint - SAMPLES:
                    turn += 1
                    one_turn(db, turn, "bench", read=(turn == 1), memory=False)
                samples = []
                while turn < checkpoint:
                    turn += 1
                    samples.append(one_turn(db, turn, "bench"))
                costs[checkpoint] = statistics.median(s["turn"] for s in samples)
                mid = samples[len(samples) // 2]
                detail.rows.append([kind, checkpoint] + [fmt_ms(mid[k]) for k in
                                                         ("get_session", "upsert_session", "upsert_run", "memory")])
            if hasattr(db, "close"):
                db.close()
            c = cold(kind, where, server.url) if kind != "InMemoryDb" else None
            growth = costs[checkpoints[-1]] / costs[checkpoints[0]]
            result.rows.append([kind] + [fmt_ms(costs[cp]) for cp in checkpoints] + [f"{growth:.2f}x",
                               fmt_ms(c["get_session"]) if c else "n/a (not persistent)"])
    result.notes.append("targets: EventLogDb turn 1000 within 1.5x of turn 10; faster than SqliteDb, JsonDb, RedisDb "
                        "at turn 1000; cold get_session of 1,000 runs <= 20 ms")
    result.notes.append("per-call breakdown at each checkpoint: " + "; ".join(
        f"{r[0]}@{r[1]}: get {r[2]}, upsert_session {r[3]}, upsert_run {r[4]}, memory {r[5]}" for r in detail.rows
        if r[1] == checkpoints[-1]))
    result.rows.extend([])
    memory_result = memories(settings)
    result.notes.extend(memory_result)
    return result


def memories(settings: Settings) -> list[str]:
    """get_user_memories(user_id=...) over N memories of 100 users (median of repeated calls)."""
    from agno.db.schemas.memory import UserMemory

    n = 2000 if settings.quick else 10_000
    notes = []
    with redis_server() as server, tempdir() as base:
        for kind in ("EventLogDb(file)", "SqliteDb", "RedisDb"):
            where = base / kind.replace("(", "-").replace(")", "")
            where.mkdir()
            db = make_db(kind, where, server.url)
            if kind == "EventLogDb(file)":
                db.store.fsync = "never"
            for i in range(n):
                db.upsert_user_memory(UserMemory(memory=f"fact {i} about the user", memory_id=f"m{i}",
                                                 user_id=f"user{i % 100}", topics=["t"]))
            reps = 3 if kind == "RedisDb" else 50
            times = []
            for r in range(reps):
                start = time.perf_counter()
                got = db.get_user_memories(user_id=f"user{r % 100}")
                times.append(time.perf_counter() - start)
            assert len(got) == n // 100
            notes.append(f"get_user_memories over {n:,} memories of 100 users, {kind}: {fmt_ms(statistics.median(times))}"
                         + (" (target <= 2 ms)" if kind.startswith("EventLogDb") else ""))
            if hasattr(db, "close"):
                db.close()
    return notes
