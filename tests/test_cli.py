"""The `eventlog` console script, run for real in subprocesses against file and Redis stores:
human and --json/--jsonl output of every command, global options before and after the
command, configuration from the environment, exit codes (2 for user mistakes, 1 for a broken
log or a risky store), tail --follow with Ctrl-C, sync of real fallback events, the demo, and
export -> import round trips (idempotent, same projections)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from eventlog import EventStore, MessageAppended, RunRecorded, SessionStarted, new_event, open_store
from eventlog.jsonl import JsonlStore
from projections import ProjectionRunner, all_projections
from tests.test_projections import seed

REPO = Path(__file__).resolve().parents[1]
SEEDED_EVENTS = 15  # tests.test_projections.seed (13) + two messages in s2


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items()
            if k not in ("REDIS_URL", "EVENTLOG_URL", "MEMORY_DIR", "EVENTLOG_OFFLINE", "EVENTLOG_ENCRYPT")}
    full.update({"PYTHONPATH": str(REPO), "NO_COLOR": "1", **(env or {})})
    return full


def eventlog(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None,
             script: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the CLI: the installed console script (`script=True`) or `python -m adapters.cli`."""
    exe = [str(Path(sys.executable).with_name("eventlog"))] if script else [sys.executable, "-m", "adapters.cli"]
    done = subprocess.run([*exe, *args], capture_output=True, input=stdin, env=cli_env(env), timeout=180,
                          check=False)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def seed_cli(store: EventStore) -> None:
    seed(store)
    store.append("session/s2", [new_event(MessageAppended(session_id="s2", role="user", content="hello team")),
                                new_event(MessageAppended(session_id="s2", role="assistant", content="hi bob",
                                                          name="coder"))])


@pytest.fixture(params=["file", "redis"])
def seeded_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = str(tmp_path / "log") if request.param == "file" else str(request.getfixturevalue("redis_url"))
    store = open_store(url)
    seed_cli(store)
    store.close()
    return url


def projections_of(url: str) -> dict[str, bytes]:
    store = open_store(url)
    runner = ProjectionRunner(store, all_projections(), use_snapshots=False)
    runner.catch_up()
    store.close()
    return {k: msgspec.msgpack.encode(v) for k, v in runner.states.items() if k != "actors"}


# --- read commands -----------------------------------------------------------------------


def test_read_commands_human_and_json(seeded_url: str) -> None:
    u = ["--url", seeded_url]
    sessions = as_json(eventlog(*u, "sessions", "--json"))
    assert {s["session_id"] for s in sessions["sessions"]} == {"s1", "s2"} and sessions["total"] == 2
    alice = as_json(eventlog("sessions", "--user", "alice", "--json", *u))["sessions"]  # global options after
    assert [(s["session_id"], s["runs"], s["type"], s["user_id"]) for s in alice] == [("s1", 2, "agent", "alice")]
    assert alice[0]["created_at"].endswith("+00:00") and alice[0]["state"] == {"step": 2}
    assert [s["session_id"] for s in as_json(eventlog(*u, "sessions", "--type", "team", "--json"))["sessions"]] == ["s2"]
    human = eventlog(*u, "sessions")
    assert human.returncode == 0 and "s1" in human.stdout and "alice" in human.stdout and "{" not in human.stdout
    assert "\x1b[" not in human.stdout  # no colour when piped

    memories = as_json(eventlog(*u, "memories", "--user", "alice", "--json"))
    m = memories["memories"][0]
    assert (m["memory"], m["changes"], m["created_by"], m["topics"]) == ("likes green tea", 2, "coder", ["food", "drink"])
    assert as_json(eventlog(*u, "memories", "--user", "bob", "--search", "VIM", "--json"))["total"] == 1
    assert as_json(eventlog(*u, "memories", "--user", "alice", "--topic", "tools", "--json"))["memories"] == []
    assert "likes green tea" in eventlog(*u, "memories", "--user", "alice").stdout

    audit = as_json(eventlog(*u, "audit", "--agent", "coder", "--user", "alice", "--json"))
    assert [e["type"] for e in audit["events"]] == ["memory.added", "run.recorded", "session.state_changed",
                                                    "memory.updated"]
    first = audit["events"][0]
    assert set(first) >= {"position", "at", "stream", "type", "agent_id", "team_id", "user_id", "run_id", "summary",
                          "id", "version"}
    assert first["summary"] == "memory=likes tea" and first["run_id"] == "r2"
    lines = eventlog(*u, "audit", "--agent", "planner", "--jsonl").stdout.strip().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["agent_id"] == "planner" for line in lines)
    assert as_json(eventlog(*u, "audit", "--since", "2000-01-01", "--until", "2001-01-01", "--json"))["events"] == []
    assert "run r1: plan it" in eventlog(*u, "audit", "--session", "s1", "--type", "run.recorded").stdout

    replay = as_json(eventlog(*u, "replay", "--session", "s1", "--json"))
    assert [(t["turn"], t["agent_id"], t["output"]) for t in replay["turns"]] == [(1, "planner", "plan it"),
                                                                                 (2, "coder", "code it")]
    chat = as_json(eventlog(*u, "replay", "--session", "s2", "--json"))["turns"]
    assert [(t["kind"], t["input"], t["output"]) for t in chat] == [("message", "hello team", None),
                                                                  ("message", None, "hi bob")]
    assert "plan it" in eventlog(*u, "replay", "--session", "s1").stdout

    tail = as_json(eventlog(*u, "tail", "--json", "--stream", "user/"))
    assert {e["stream"] for e in tail["events"]} == {"user/alice", "user/bob"}
    everything = as_json(eventlog(*u, "tail", "--json"))["events"]
    assert len(everything) == SEEDED_EVENTS
    after = as_json(eventlog(*u, "tail", "--after", str(everything[9]["position"]), "--limit", "2", "--json"))
    assert [e["id"] for e in after["events"]] == [e["id"] for e in everything[10:12]]
    steps = eventlog(*u, "tail", "--type", "workflow.step_completed", "--jsonl").stdout.splitlines()
    assert [json.loads(s)["summary"] for s in steps] == ["name=step1", "name=step2", "name=step3"]

    stats = as_json(eventlog(*u, "stats", "--json"))
    assert stats["events"] == SEEDED_EVENTS and stats["streams"] == 5 and stats["health"] == "ok"
    assert stats["by_type"]["workflow.step_completed"] == 3 and stats["by_actor"]["agent:coder"] >= 4
    assert (stats["bytes"] > 1000) if seeded_url.startswith("/") else stats["redis_used_memory"] > 0
    human_stats = eventlog(*u, "stats").stdout
    assert "by type" in human_stats and "by actor" in human_stats and "agent:planner" in human_stats


def test_configuration_from_the_environment(tmp_path: Path, redis_url: str) -> None:
    memory_dir = tmp_path / "mem"
    store = open_store(str(memory_dir))
    seed_cli(store)
    store.close()
    env = {"MEMORY_DIR": str(memory_dir)}
    assert as_json(eventlog("stats", "--json", env=env, script=True))["events"] == SEEDED_EVENTS
    # EVENTLOG_URL wins over MEMORY_DIR; --url wins over both
    assert as_json(eventlog("stats", "--json", env={**env, "EVENTLOG_URL": redis_url}))["events"] == 0
    assert as_json(eventlog("--url", str(memory_dir), "stats", "--json",
                            env={"EVENTLOG_URL": redis_url}))["events"] == SEEDED_EVENTS
    # REDIS_URL: Redis with MEMORY_DIR/fallback behind it
    doc = as_json(eventlog("stats", "--json", env={**env, "REDIS_URL": redis_url}))
    assert doc["backend"] == "FallbackStore" and "fallback" in doc["url"]
    assert as_json(eventlog("stats", "--json", env={"EVENTLOG_OFFLINE": "1"}))["url"] == "memory://"


# --- time travel --------------------------------------------------------------------------


def test_time_travel_commands(seeded_url: str) -> None:
    u = ["--url", seeded_url]
    events = as_json(eventlog(*u, "tail", "--json"))["events"]
    run2 = next(e for e in events if e["type"] == "run.recorded" and "code it" in e["summary"])
    before = next(e for e in events if e["type"] == "memory.added")
    state = as_json(eventlog(*u, "state", "--session", "s1", "--at", before["id"], "--json"))
    assert state["runs"] == 1 and state["state"] == {"step": 1} and state["run_ids"] == ["r1"]
    by_position = as_json(eventlog(*u, "state", "--session", "s1", "--at", str(before["position"]), "--json"))
    assert by_position["state"] == {"step": 1}
    now = as_json(eventlog(*u, "state", "--session", "s1", "--at", "2999-01-01T00:00:00Z", "--json"))
    assert now["runs"] == 2 and now["last_output"] == "code it"
    assert "plan it" in eventlog(*u, "state", "--session", "s1", "--at", before["id"]).stdout
    changes = as_json(eventlog(*u, "diff", "--session", "s1", before["id"], run2["id"], "--json"))["changes"]
    assert [(c["kind"], c["key"], c["after"]) for c in changes] == [("run.added", "s1:r2", "code it")]
    assert "run.added" in eventlog(*u, "diff", "--session", "s1", before["id"], run2["id"]).stdout
    forked = as_json(eventlog(*u, "fork", "--session", "s1", "--at", before["id"], "--new", "s1-copy", "--json"))
    assert forked["session_id"] == "s1-copy" and forked["forked_from"] == "s1"
    assert [t["output"] for t in as_json(eventlog(*u, "replay", "--session", "s1-copy", "--json"))["turns"]] == [
        "plan it"]
    plain = eventlog(*u, "fork", "--session", "s1", "--at", before["id"])  # human: just the new id on stdout
    new_id = plain.stdout.strip()
    assert plain.returncode == 0 and len(new_id) == 36 and "forked s1" in plain.stderr
    assert as_json(eventlog(*u, "replay", "--session", new_id, "--json"))["turns"][0]["output"] == "plan it"
    again = eventlog(*u, "fork", "--session", "s1", "--at", before["id"], "--new", "s1-copy")
    assert again.returncode == 2 and "already exists" in again.stderr


# --- errors -------------------------------------------------------------------------------


def test_bad_input_exit_2_one_line_no_traceback(seeded_url: str, tmp_path: Path) -> None:
    u = ["--url", seeded_url]
    cases = [
        (u + ["replay", "--session", "nope"], "unknown session"),
        (u + ["state", "--session", "nope", "--at", "1"], "unknown session"),
        (u + ["audit", "--since", "yesterday-ish"], "bad time"),
        (u + ["state", "--session", "s1", "--at", "2026-13-45"], "bad time"),
        (u + ["state", "--session", "s1", "--at", "no-such-event"], "no event with id"),
        (u + ["diff", "--session", "s1", "1", "zz"], "no event with id"),
        (u + ["tail", "--after", "abc"], "not a position"),
        (u + ["verify", "--expect-root", "xyz"], "not a root"),
        (u + ["sync"], "nothing to sync"),
        (u + ["import", str(tmp_path / "missing.jsonl")], "No such file"),
        (u + ["export", "--out", str(tmp_path / "no" / "dir" / "x.jsonl")], "No such file"),
        (u + ["--json", "--jsonl", "stats"], "exclusive"),
        (["--url", "ftp://x/y", "stats"], "unknown store URL scheme"),
        (["--url", "redis://:hunter2@127.0.0.1:1/0", "stats"], "unavailable"),
        (["sessions", "--url", "redis://:hunter2@127.0.0.1:1/0"], "unavailable"),
    ]
    for args, expected in cases:
        done = eventlog(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert expected in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
        assert "hunter2" not in done.stderr + done.stdout
        lines = done.stderr.strip().splitlines()
        assert lines[0].startswith("eventlog: ") and len(lines) <= 2 and lines[-1].startswith("hint: "), lines
    password = eventlog("stats", env={"EVENTLOG_URL": "redis://:hunter2@127.0.0.1:1/0"})
    assert password.returncode == 2 and "***" in password.stderr and "hunter2" not in password.stderr
    usage = eventlog("tail", "--limit", "0")  # argparse mistakes: exit 2 with usage, no traceback
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_verify_exit_codes_and_tamper(tmp_path: Path) -> None:
    url = str(tmp_path / "log")
    store = open_store(url)
    seed_cli(store)
    store.close()
    ok = as_json(eventlog("--url", url, "verify", "--json"))
    assert ok["ok"] is True and ok["events"] == SEEDED_EVENTS and ok["first_break"] is None
    assert as_json(eventlog("--url", url, "verify", "--expect-root", ok["root"], "--json"))["ok"] is True
    checkpoint = as_json(eventlog("--url", url, "verify", "--checkpoint", "--json"))["checkpoint"]
    assert checkpoint["position"] == SEEDED_EVENTS + 1
    human = eventlog("--url", url, "verify", "--resume")
    assert human.returncode == 0 and "root" in human.stdout
    seg = tmp_path / "log" / "00000001.jsonl"
    seg.write_bytes(seg.read_bytes().replace(b"likes tea", b"likes rum", 1))
    [saved.unlink() for saved in (tmp_path / "log").glob("streams.sqlite3*")]
    bad = eventlog("--url", url, "verify", "--json")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    b = report["first_break"]
    assert report["ok"] is False and b["kind"] == "edited" and b["stream"] == "user/alice" and b["version"] == 1
    assert len(b["id"]) == 36
    human_bad = eventlog("--url", url, "verify")
    assert human_bad.returncode == 1 and "FIRST BREAK" in human_bad.stdout and "user/alice" in human_bad.stdout
    assert eventlog("--url", url, "verify", "--expect-root", "0" * 64).returncode == 1


# --- export / import ----------------------------------------------------------------------


def test_export_import_round_trip_is_idempotent(seeded_url: str, tmp_path: Path, redis_url: str) -> None:
    dump = tmp_path / "dump.jsonl"
    exported = eventlog("--url", seeded_url, "export", "--out", str(dump))
    assert exported.returncode == 0 and f"exported {SEEDED_EVENTS} events" in exported.stdout
    assert len(dump.read_bytes().splitlines()) == SEEDED_EVENTS and stat.S_IMODE(dump.stat().st_mode) == 0o600
    # into the other kind of store (file -> Redis db 1, Redis -> file), then again: no change
    target = str(tmp_path / "copy") if not seeded_url.startswith("/") else redis_url.rsplit("/", 1)[0] + "/1"
    first = as_json(eventlog("--url", target, "import", str(dump), "--json"))
    assert (first["imported"], first["already_present"], first["unreadable_lines"]) == (SEEDED_EVENTS, 0, 0)
    again = as_json(eventlog("--url", target, "import", str(dump), "--json"))
    assert (again["imported"], again["already_present"]) == (0, SEEDED_EVENTS)
    assert projections_of(seeded_url) == projections_of(target)
    assert as_json(eventlog("--url", target, "verify", "--json"))["ok"] is True
    # stdout -> stdin, as in `eventlog export | eventlog --url other import -`
    piped = eventlog("--url", seeded_url, "export")
    assert piped.returncode == 0 and len(piped.stdout.splitlines()) == SEEDED_EVENTS
    third = str(tmp_path / "third")
    done = as_json(eventlog("--url", third, "import", "-", "--json", stdin=piped.stdout.encode()))
    assert done["imported"] == SEEDED_EVENTS and projections_of(third) == projections_of(seeded_url)
    assert "imported" in eventlog("--url", third, "import", str(dump)).stdout  # human summary table


def test_import_reports_damaged_lines_and_keeps_the_rest(tmp_path: Path) -> None:
    url = str(tmp_path / "log")
    store = open_store(url)
    seed_cli(store)
    store.close()
    lines = eventlog("--url", url, "export").stdout.splitlines()
    damaged = "\n".join(lines[:3] + ["{not json", ""] + lines[3:]) + "\n"
    done = eventlog("--url", str(tmp_path / "copy"), "import", "-", "--json", stdin=damaged.encode())
    assert done.returncode == 1 and "line 4: skipped" in done.stderr and "Traceback" not in done.stderr
    assert json.loads(done.stdout) == {"imported": SEEDED_EVENTS, "already_present": 0, "unreadable_lines": 1,
                                       "source": "-"}


# --- doctor and sync ----------------------------------------------------------------------


def test_doctor(redis_url: str, tmp_path: Path) -> None:
    done = eventlog("--url", redis_url, "doctor", "--json")
    assert done.returncode == 1  # the test server runs with no AOF and no RDB
    doc = json.loads(done.stdout)
    checks = {c["check"]: c for c in doc["checks"]}
    assert checks["redis reachable"]["status"] == "ok" and "(Redis " in checks["redis reachable"]["detail"]
    assert checks["redis persistence"]["status"] == "error" and "LOSES" in checks["redis persistence"]["detail"]
    assert checks["maxmemory-policy"]["status"] == "ok" and doc["healthy"] is False
    assert "LOSES THE WHOLE LOG" in eventlog("--url", redis_url, "doctor").stdout

    log = tmp_path / "log"
    open_store(str(log)).close()
    file_doc = as_json(eventlog("--url", str(log), "doctor", "--json"))
    assert {c["status"] for c in file_doc["checks"]} == {"ok"} and file_doc["healthy"] is True
    os.chmod(log, 0o755)
    loose = eventlog("--url", str(log), "doctor", "--json")
    assert loose.returncode == 1
    assert {c["check"]: c["status"] for c in json.loads(loose.stdout)["checks"]}["file store directory"] == "warn"

    down = eventlog("--url", "redis://:hunter2@127.0.0.1:1/0", "doctor", "--json")
    assert down.returncode == 1 and "hunter2" not in down.stdout + down.stderr
    assert json.loads(down.stdout)["checks"][0] == {"check": "redis reachable", "status": "error",
                                                    "detail": json.loads(down.stdout)["checks"][0]["detail"]}
    assert as_json(eventlog("--url", "memory://", "doctor", "--json"))["healthy"] is True


def test_sync_replays_fallback_events_into_redis(redis_url: str, tmp_path: Path) -> None:
    fallback = tmp_path / "fb"
    side = JsonlStore(fallback)  # what a FallbackStore wrote while Redis was away
    side.append("session/off", [new_event(SessionStarted(session_id="off", user_id="carol"))])
    side.append("session/off", [new_event(RunRecorded(session_id="off", run_id=f"r{i}", run={"content": f"c{i}"}))
                                for i in range(3)])
    side.close()
    u = ["--url", redis_url, "--fallback", str(fallback)]
    doctor = as_json_rc(eventlog(*u, "doctor", "--json"), 1)
    assert {c["check"]: c for c in doctor["checks"]}["pending fallback events"]["detail"].startswith("4 events")
    assert as_json(eventlog(*u, "stats", "--json"))["issues"] == ["4 fallback events wait for Redis (eventlog sync)"]
    done = as_json(eventlog(*u, "sync", "--json"))
    assert (done["pending_before"], done["replayed"], done["already_present"], done["remaining"]) == (4, 4, 0, 0)
    assert done["complete"] is True and done["primary"] == redis_url
    turns = as_json(eventlog("--url", redis_url, "replay", "--session", "off", "--json"))["turns"]
    assert [t["output"] for t in turns] == ["c0", "c1", "c2"]
    human = eventlog(*u, "sync")
    assert human.returncode == 0 and "pending_before" in human.stdout and "replayed" in human.stdout
    # REDIS_URL configures the same thing from the environment (fallback: MEMORY_DIR/fallback)
    env = {"REDIS_URL": redis_url, "MEMORY_DIR": str(tmp_path / "mem")}
    assert as_json(eventlog("sync", "--json", env=env))["pending_before"] == 0


def as_json_rc(done: subprocess.CompletedProcess[str], code: int) -> Any:
    assert done.returncode == code, (done.stdout, done.stderr)
    return json.loads(done.stdout)


# --- tail --follow ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_tail_follow_prints_new_events_and_stops_cleanly_on_ctrl_c(kind: str, tmp_path: Path,
                                                                  request: pytest.FixtureRequest) -> None:
    url = str(tmp_path / "log") if kind == "file" else str(request.getfixturevalue("redis_url"))
    store = open_store(url)
    seed_cli(store)
    proc = subprocess.Popen([sys.executable, "-m", "adapters.cli", "--url", url, "tail", "--follow", "--jsonl",
                             "--stream", "session/live"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=cli_env())
    try:
        time.sleep(1.0)  # let it start and catch up (nothing matches yet)
        store.append("session/live", [new_event(MessageAppended(session_id="live", role="user", content="now"))])
        assert proc.stdout is not None
        row = json.loads(proc.stdout.readline())
        assert row["stream"] == "session/live" and row["summary"] == "user: now"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        store.close()
    assert proc.returncode == 0
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read().decode()


def test_tail_follow_human_lines_and_limit(tmp_path: Path) -> None:
    url = str(tmp_path / "log")
    store = open_store(url)
    seed_cli(store)
    store.close()
    done = eventlog("--url", url, "tail", "--follow", "--limit", "3")  # ends by itself after 3 events
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 3 and "session.started" in lines[0] and "planner" in lines[0]


# --- the registry and the demo ------------------------------------------------------------


def test_registry_accepts_a_new_command() -> None:
    from adapters.cli import COMMANDS, Command, build_parser, register

    names = [c.name for c in COMMANDS] or [c.name for c in (build_parser() and COMMANDS)]
    assert {"tail", "audit", "sessions", "memories", "replay", "state", "diff", "fork", "verify", "sync", "stats",
            "doctor", "export", "import", "demo"} <= set(names)
    extra = register(Command(name="hello", help="say hello", run_plain=lambda args, out: 7))
    try:
        args = build_parser().parse_args(["hello", "--json"])
        assert args.spec is extra and args.spec.run_plain(args, None) == 7 and args.json is True
    finally:
        COMMANDS.remove(extra)
    with pytest.raises(ValueError):
        Command(name="bad", help="neither kind")


def test_demo_runs_twice_on_the_file_store(tmp_path: Path) -> None:
    env = {"MEMORY_DIR": str(tmp_path / "mem")}
    first = eventlog("demo", env=env, script=True)
    assert first.returncode == 0, first.stderr
    assert "Restart" in first.stdout and "resumed session" in first.stdout and "eventlog replay --session" in first.stdout
    second = eventlog("demo", "--json", env=env)
    result = as_json(second)
    assert result["workflow_resumed_at"] == 4 and result["workflow_done"] and result["verify_ok"]
    assert result["resumed_history_runs"] > 0 and set(result["writers"]) >= {"planner", "coder", "reviewer"}
    sessions = as_json(eventlog("sessions", "--json", env=env))["sessions"]
    assert len(sessions) == 2  # a new session each run, both kept


def test_bench_runs_a_quick_benchmark_and_reports_json(tmp_path: Path) -> None:
    """`eventlog bench` runs the benchmarks from any directory; --json gives the tables as data,
    and nothing is written with --no-write."""
    results = Path(__file__).resolve().parents[1] / "benchmarks" / "RESULTS.md"
    before = results.read_bytes() if results.exists() else None
    done = subprocess.run([str(Path(sys.executable).with_name("eventlog")), "bench", "peer", "--quick", "--no-write",
                           "--json"], capture_output=True, text=True, cwd=tmp_path, env=cli_env(None), timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    (peer,) = doc["results"]
    assert peer["name"] == "peer" and doc["quick"] is True
    ops = {row["operation"]: row for row in peer["rows"]}
    assert set(ops) == {"append (batches of 100)", "read all back"}
    assert all(row["ours / theirs"].endswith("x") and row["target"] == ">= 3x" for row in ops.values())
    assert (results.read_bytes() if results.exists() else None) == before
    bad = eventlog("bench", "nope")
    assert bad.returncode == 2 and "unknown benchmark" in bad.stderr and "choose from" in bad.stderr
