"""Read cost and memory as the data grows to 50,000 sessions, EventLogDb beside Agno's own dbs.

Issue #16's growth benchmark: the reads an AgentOS worker makes should cost what they return,
not what the log holds. The data is Agno-shaped: 10 sessions per user, 5 memories per user,
RUNS_PER_SESSION runs per session (real `AgentSession` / `RunOutput` objects, written through
each db's public Agno `BaseDb` methods: `upsert_session`, `upsert_run`, `upsert_user_memory`,
so every db holds what Agno would have written to it). One data set per db grows through the
checkpoints (1,000, 10,000, 50,000 sessions); loading runs in subprocesses, two at a time, and
nothing is measured while anything loads.

At each checkpoint every figure comes from fresh processes (the median of REPEATS of them,
figure by figure): a process imports the db's module, then times opening the db plus its first
`get_session`, a second `get_session` of another session, one user's `get_sessions`, one
user's `get_user_memories`, and an AgentOS page (20 sessions sorted by `updated_at`, newest
first, `deserialize=False`), in that order, and reports its peak RSS. Every answer is checked
(the session's runs, the user's 10 sessions and 5 memories, a page of 20 with the full count).
Size is the store's files on disk, or the Redis server's `used_memory` above an empty server
(each Redis db has its own private server, so that figure is its own).

The ratios are the issue's targets, measured in the same run: each read at the largest size
against the same read at the smallest (target <= 1.5x), against Agno's SqliteDb at the same
size (target <= 1.0x), and peak RSS at the largest size minus the smallest (target <= 30 MiB).
`EventLogDb(file, encrypted)` is the file store opened with encryption (`EVENTLOG_ENCRYPT=1`),
which reads an index of the decrypted log; `EventLogDb(REDIS_URL)` reads EventLogDb(redis)'s
log and index through Redis with the file fallback. Only public Agno methods are called, so
this measures whichever EventLogDb is installed.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from benchmarks._common import Result, Settings, fmt_ms, process_env, redis_server, tempdir

SIZES_FULL = [1_000, 10_000, 50_000]
SIZES_QUICK = [100, 300]
SESSIONS_PER_USER = 10
MEMORIES_PER_USER = 5
RUNS_PER_SESSION = 3
REPEATS = 3  # fresh processes per checkpoint and db (1 with --quick); each figure's median
LOADERS = 2  # loading subprocesses at a time (a 2-core machine; Redis servers use CPU too)
KINDS = ["EventLogDb(file)", "EventLogDb(file, encrypted)", "EventLogDb(redis)", "EventLogDb(REDIS_URL)",
         "SqliteDb", "RedisDb"]
# Read over another kind's data, not loaded itself: REDIS_URL's EventLogDb (Redis with the file
# fallback) reads the same log and index as EventLogDb(redis).
READS_OF = {"EventLogDb(REDIS_URL)": "EventLogDb(redis)"}
LOAD_ORDER = ["SqliteDb", "EventLogDb(redis)", "EventLogDb(file, encrypted)", "RedisDb", "EventLogDb(file)"]  # the slowest to load first
# The size above which a db is not loaded in a full run. Agno's RedisDb writes each run and its
# field indexes in several round trips (50,000 sessions would take it 3 to 10 minutes alone on
# a 2-core machine) and answers get_sessions by fetching every session, which 10,000 shows.
CAPS = {"RedisDb": 10_000}
READS = ["first", "second", "user_sessions", "user_memories", "page", "search", "sort", "msearch"]
HEADINGS = {"first": "open + 1st get_session", "second": "2nd get_session", "user_sessions": "a user's sessions",
            "user_memories": "a user's memories", "page": "AgentOS page (20, updated_at desc)",
            "search": "AgentOS name search (1 match)", "sort": "AgentOS page by user_id",
            "msearch": "AgentOS memory search (all users)"}


def session_id(i: int) -> str:
    return f"sess-{i:06d}"


def user_id(i: int) -> str:
    """The owner of session `i` (SESSIONS_PER_USER consecutive sessions per user)."""
    return f"user-{i // SESSIONS_PER_USER:05d}"


def make_db(kind: str, where: Path, redis_url: str | None, *, loading: bool = False) -> Any:
    """The db of `kind` over the data in `where` (or on the Redis server at `redis_url`).
    `loading` only turns off fsync (file store, SQLite): what is written stays the same."""
    if kind == "SqliteDb":
        from agno.db.sqlite import SqliteDb

        db = SqliteDb(db_file=str(where / "agno.sqlite"))
        if loading:  # commits without fsync (as the file store's fsync=never); same rows, same file
            from sqlalchemy import event

            event.listen(db.db_engine, "connect", lambda conn, _: conn.execute("PRAGMA synchronous=OFF"))
        return db
    if kind == "RedisDb":
        from agno.db.redis import RedisDb

        return RedisDb(db_url=redis_url, db_prefix="agno")
    from adapters.agno import EventLogDb

    if kind == "EventLogDb(file)":
        return EventLogDb(f"file://{where / 'eventlog'}" + ("?fsync=never" if loading else ""))
    if kind == "EventLogDb(file, encrypted)":  # EVENTLOG_ENCRYPT=1: the index of the decrypted log
        from eventlog import open_store

        return EventLogDb(store=open_store(f"file://{where / 'eventlog'}" + ("?fsync=never" if loading else ""),
                                           encrypt=True, key_dir=str(where / "keys")))
    if kind == "EventLogDb(REDIS_URL)":  # what REDIS_URL opens: Redis, the file store behind it
        from eventlog import open_store

        return EventLogDb(store=open_store(f"{redis_url}?prefix=elgrowth", fallback=str(where / "fallback")))
    return EventLogDb(f"{redis_url}?prefix=elgrowth")


def make_run(i: int, k: int) -> Any:
    """Run `k` of session `i`, shaped like what `Agent.run` stores (messages, metrics, model)."""
    from agno.metrics import RunMetrics
    from agno.models.message import Message
    from agno.run.agent import RunOutput
    from agno.run.base import RunStatus

    answer = f"Answer {k} for session {i}: " + "lorem ipsum " * 20
    return RunOutput(
        run_id=f"{session_id(i)}-run-{k}", agent_id="assistant", agent_name="Assistant", session_id=session_id(i),
        user_id=user_id(i), content=answer, status=RunStatus.completed, model="offline", model_provider="Offline",
        messages=[Message(role="user", content=f"Question {k}? " + "dolor sit amet " * 5),
                  Message(role="assistant", content=answer)],
        metrics=RunMetrics(input_tokens=40, output_tokens=60, total_tokens=100),
    )


def load(db: Any, start: int, end: int) -> None:
    """Sessions [start, end) with their runs, and each new user's memories, as Agno writes them
    (a session row, then each run; memories as the memory manager upserts them)."""
    from agno.db.schemas.memory import UserMemory
    from agno.session import AgentSession

    for i in range(start, end):
        sid, uid = session_id(i), user_id(i)
        if i % SESSIONS_PER_USER == 0:
            for m in range(MEMORIES_PER_USER):
                db.upsert_user_memory(UserMemory(memory=f"{uid} fact {m}: likes topic {m}", memory_id=f"{uid}-m{m}",
                                                 user_id=uid, topics=[f"topic{m}"], agent_id="assistant"))
        db.upsert_session(AgentSession(
            session_id=sid, agent_id="assistant", user_id=uid, runs=[],
            agent_data={"name": "Assistant", "agent_id": "assistant",
                        "model": {"id": "offline", "name": "OfflineModel", "provider": "Offline"}},
            session_data={"session_state": {"step": i % 7}, "session_name": f"Conversation {i}"}))
        for k in range(RUNS_PER_SESSION):
            db.upsert_run(make_run(i, k), session_id=sid, user_id=uid, run_index=k)


LOAD_SCRIPT = """
import sys
from pathlib import Path
from benchmarks.growth import load, make_db
db = make_db(sys.argv[1], Path(sys.argv[2]), sys.argv[3] or None, loading=True)
load(db, int(sys.argv[4]), int(sys.argv[5]))
if hasattr(db, "close"):
    db.close()
if getattr(db, "_owns_store", True) is False:  # a db given its store (encrypted): closing it is ours
    db.store.close()
"""

# One fresh process: import the db's module first, so "open" is opening, not importing Agno.
MEASURE_SCRIPT = """
import json, resource, sys, time
from pathlib import Path
kind, where, url, n = sys.argv[1], Path(sys.argv[2]), sys.argv[3] or None, int(sys.argv[4])
if kind == "SqliteDb":
    import agno.db.sqlite
elif kind == "RedisDb":
    import agno.db.redis
else:
    import adapters.agno
    if kind in ("EventLogDb(redis)", "EventLogDb(REDIS_URL)"):
        import eventlog.stores.redis_store  # redis-py (~160 ms), as `import agno.db.redis` imports it for RedisDb
from agno.db.base import SessionType
from benchmarks.growth import (MEMORIES_PER_USER, RUNS_PER_SESSION, SESSIONS_PER_USER, make_db, session_id,
                               user_id)
# A fresh process has never run a full collection: the first one (15-30 ms, walking every
# object the imports made) falls into whichever timed call allocates past the threshold
# first (in one run "a user's sessions" at 37 ms, in the next "open"). Settled here, every
# db's figures are its own work.
import gc
gc.collect()
t = {}
start = time.perf_counter()
db = make_db(kind, where, url)
t["open"] = time.perf_counter() - start
got = db.get_session(session_id=session_id(n // 2), session_type=SessionType.AGENT)
t["first"] = time.perf_counter() - start
assert got is not None and len(got.runs or []) == RUNS_PER_SESSION, got
start = time.perf_counter()
got = db.get_session(session_id=session_id(n - 1), session_type=SessionType.AGENT)
t["second"] = time.perf_counter() - start
assert got is not None and len(got.runs or []) == RUNS_PER_SESSION, got
users = n // SESSIONS_PER_USER
start = time.perf_counter()
mine = db.get_sessions(user_id=user_id(users // 3 * SESSIONS_PER_USER), session_type=SessionType.AGENT)
t["user_sessions"] = time.perf_counter() - start
assert len(mine) == SESSIONS_PER_USER, len(mine)
start = time.perf_counter()
memories = db.get_user_memories(user_id=user_id(users * 2 // 3 * SESSIONS_PER_USER))
t["user_memories"] = time.perf_counter() - start
assert len(memories) == MEMORIES_PER_USER, len(memories)
start = time.perf_counter()
page, total = db.get_sessions(session_type=SessionType.AGENT, limit=20, page=1, sort_by="updated_at",
                              sort_order="desc", deserialize=False)
t["page"] = time.perf_counter() - start
assert len(page) == 20 and total == n, (len(page), total)
# AgentOS's search box: a name substring (case-insensitive) that one session's name holds
# at every size ("Conversation 250" at 1,000: "Conversation 2500" and up are not there)
start = time.perf_counter()
found, total = db.get_sessions(session_type=SessionType.AGENT, session_name=f"conversation {n // 4}", limit=20,
                               page=1, sort_by="created_at", sort_order="desc", deserialize=False)
t["search"] = time.perf_counter() - start
assert total == 1 and found[0]["session_id"] == session_id(n // 4), (total, found)
# A column header AgentOS's API sorts by that no db indexes
start = time.perf_counter()
page, total = db.get_sessions(session_type=SessionType.AGENT, limit=20, page=1, sort_by="user_id",
                              sort_order="asc", deserialize=False)
t["sort"] = time.perf_counter() - start
assert total == n and [p["user_id"] for p in page] == sorted(p["user_id"] for p in page), total
# AgentOS's memory search box over every user's memories: one user's memories match
start = time.perf_counter()
found, total = db.get_user_memories(search_content=f"{user_id(n // 4)} FACT", limit=20, page=1,
                                    sort_by="updated_at", sort_order="desc", deserialize=False)
t["msearch"] = time.perf_counter() - start
assert total == MEMORIES_PER_USER and len(found) == MEMORIES_PER_USER, (total, found)
def peak_rss_mib():
    # VmHWM: this process image's own peak. ru_maxrss survives execve on Linux, so a process
    # started from a large parent (the benchmark runner after the 1M-event replay) reports
    # the parent's size.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t["rss_mib"] = peak_rss_mib()
print(json.dumps(t))
"""

ROOT = Path(__file__).resolve().parents[1]


def _script(script: str, *args: str, output: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    # (bytecode caches on: see process_env)
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=output, stderr=output, text=True,
                            cwd=str(ROOT), env=process_env())


def _finish(proc: subprocess.Popen[str], what: str, output: IO[str] | None = None) -> str:
    out, err = proc.communicate(timeout=3600)
    if output is not None:  # (a loader's output went to a file: a pipe nobody reads could fill and block it)
        output.seek(0)
        err = output.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{(err or '')[-3000:]}")
    return out or ""


def load_all(jobs: list[tuple[str, Path, str | None, int, int]]) -> dict[str, float]:
    """Run the loading jobs, LOADERS at a time; the wall time of each (kind -> seconds)."""
    pending = list(jobs)
    running: list[tuple[str, float, subprocess.Popen[str], IO[str]]] = []
    took: dict[str, float] = {}
    while pending or running:
        while pending and len(running) < LOADERS:
            kind, where, url, start, end = pending.pop(0)
            output = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed when the loader ends)
            proc = _script(LOAD_SCRIPT, kind, str(where), url or "", str(start), str(end), output=output)
            running.append((kind, time.monotonic(), proc, output))
        for entry in list(running):
            kind, began, proc, log = entry
            if proc.poll() is not None:
                with log:
                    _finish(proc, f"loading {kind}", log)
                took[kind] = time.monotonic() - began
                running.remove(entry)
        time.sleep(0.05)
    return took


def measure(kind: str, where: Path, url: str | None, n: int, repeats: int) -> dict[str, float]:
    """Each figure's median over `repeats` fresh processes, one after another."""
    runs = []
    for _ in range(repeats):
        out = _finish(_script(MEASURE_SCRIPT, kind, str(where), url or "", str(n)), f"measuring {kind} at {n}")
        runs.append(json.loads(out.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def redis_used(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


def fmt_size(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def fmt_x(ratio: float, target: float) -> str:
    return f"{ratio:.2f}x" + (" ok" if ratio <= target else " MISSED")


def run(settings: Settings) -> Result:
    sizes = SIZES_QUICK if settings.quick else SIZES_FULL
    repeats = 1 if settings.quick else REPEATS
    caps = {} if settings.quick else CAPS
    first, last = sizes[0], sizes[-1]
    cols = ["db", "sessions"] + [HEADINGS[r] for r in READS] + ["peak RSS", "size"]
    result = Result("growth", f"Growth to {last:,} sessions ({SESSIONS_PER_USER} per user, {MEMORIES_PER_USER} "
                              f"memories per user, {RUNS_PER_SESSION} runs each): each read from fresh processes "
                              f"(median of {repeats})", cols)
    figures: dict[tuple[str, int], dict[str, float]] = {}
    loading: dict[str, list[str]] = {k: [] for k in KINDS}
    with redis_server() as el_redis, redis_server() as agno_redis, tempdir() as base:
        urls: dict[str, str | None] = {"EventLogDb(file)": None, "EventLogDb(file, encrypted)": None,
                                       "EventLogDb(redis)": el_redis.url,
                                       "EventLogDb(REDIS_URL)": el_redis.url, "SqliteDb": None,
                                       "RedisDb": agno_redis.url}
        empty = {kind: redis_used(url) for kind, url in urls.items() if url}
        dirs = {kind: base / re.sub(r"[^A-Za-z0-9_]+", "-", kind).strip("-") for kind in KINDS}
        for d in dirs.values():
            d.mkdir()
        have = dict.fromkeys(KINDS, 0)
        for size in sizes:
            active = [k for k in KINDS if size <= caps.get(k, size)]
            took = load_all([(k, dirs[k], urls[k], have[k], size)
                             for k in sorted(set(active) - set(READS_OF), key=LOAD_ORDER.index)])
            for kind, seconds in took.items():
                loading[kind].append(f"{have[kind]:,}->{size:,} in {seconds:.0f} s "
                                     f"({seconds / (size - have[kind]) * 1000:.1f} ms per session)")
                have[kind] = size
            for kind in active:
                measured = measure(kind, dirs[kind], urls[kind], size, repeats)
                url = urls[kind]
                measured["size"] = (figures[READS_OF[kind], size]["size"] if kind in READS_OF
                                    else redis_used(url) - empty[kind] if url else disk_bytes(dirs[kind]))
                figures[kind, size] = measured
        for kind in KINDS:
            for size in sizes:
                f = figures.get((kind, size))
                if f is None:
                    result.rows.append([kind, f"{size:,}", f"not loaded (capped at {caps[kind]:,} sessions, see the note)"]
                                       + [""] * (len(cols) - 3))
                    continue
                where = ("on disk" if urls[kind] is None else "Redis used_memory"
                         + (f" (the same log as {READS_OF[kind]})" if kind in READS_OF else ""))
                result.rows.append([kind, f"{size:,}", f"{fmt_ms(f['first'])} (open {fmt_ms(f['open'])})"]
                                   + [fmt_ms(f[r]) for r in READS[1:]]
                                   + [fmt_size(f["rss_mib"] * 2**20), f"{fmt_size(f['size'])} {where}"])
            top = max((s for s in sizes if (kind, s) in figures), default=first)
            low, high = figures.get((kind, first)), figures.get((kind, top))
            if low is not None and high is not None and top != first:
                result.rows.append([f"{kind}: {top:,} vs {first:,}", "ratio"]
                                   + [fmt_x(high[r] / low[r], 1.5) for r in READS]
                                   + [f"+{high['rss_mib'] - low['rss_mib']:.1f} MiB"
                                      + (" ok" if high["rss_mib"] - low["rss_mib"] <= 30 else " MISSED"),
                                      f"{high['size'] / low['size']:.1f}x"])
            sqlite = figures.get(("SqliteDb", top))
            if kind != "SqliteDb" and high is not None and sqlite is not None:
                result.rows.append([f"{kind} / SqliteDb at {top:,}", "ratio"]
                                   + [fmt_x(high[r] / sqlite[r], 1.0) for r in READS]
                                   + [f"{high['rss_mib'] / sqlite['rss_mib']:.2f}x", ""])
    result.notes.append(f"targets (issue #16): each read at {last:,} sessions <= 1.5x its {first:,}-session figure and "
                        f"<= 1.0x SqliteDb's at {last:,}; peak RSS at {last:,} <= 30 MiB above {first:,}. "
                        f"'ok'/'MISSED' mark them")
    result.notes.append("each process: import the db's module, gc.collect() (the process's first full collection "
                        "would otherwise land in whichever timed call comes first), then open + get_session (the 'open' part shown apart), "
                        "a 2nd get_session of another session, get_sessions(user_id=...), get_user_memories(user_id=...), "
                        "get_sessions(limit=20, page=1, sort_by='updated_at', sort_order='desc', deserialize=False), "
                        "the same page with session_name='conversation <n/4>' (AgentOS's search box; one match at "
                        "every size) sorted by created_at, and the same page with sort_by='user_id', sort_order='asc' "
                        "(a column no db here indexes: every db sorts every session of the type), "
                        "then get_user_memories(search_content='<a user> FACT', limit=20, sort_by='updated_at') over every "
                        "user's memories (AgentOS's memory search box; that user's 5 match: a substring test of every "
                        "memory's text in every db here, EventLogDb's in its index), "
                        "in that order; peak RSS = that process's own peak (VmHWM; ru_maxrss would carry its parent's over execve)")
    for kind, parts in loading.items():
        if kind in READS_OF:
            result.notes.append(f"{kind}: open_store(redis_url, fallback=dir) -- what REDIS_URL opens -- reading the "
                                f"log {READS_OF[kind]} loaded (not loaded again)")
            continue
        cap = caps.get(kind)
        result.notes.append(f"loading {kind} through its public Agno methods (in a subprocess, beside one other "
                            f"loader): " + "; ".join(parts) + (f"; capped at {cap:,} sessions" if cap else ""))
    return result

