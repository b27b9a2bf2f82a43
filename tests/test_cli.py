"""The `eventlog` console script, run for real in subprocesses against file and Redis stores:
human and --json output of every command, exit codes for bad input, the demo (twice),
export -> import round trip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from eventlog import open_store
from projections import ProjectionRunner, all_projections
from tests.test_projections import seed

REPO = Path(__file__).resolve().parents[1]


def eventlog(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None,
             script: bool = False) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "EVENTLOG_URL", "MEMORY_DIR")}
    full_env.update({"PYTHONPATH": str(REPO), "NO_COLOR": "1", **(env or {})})
    exe = [str(Path(sys.executable).with_name("eventlog"))] if script else [sys.executable, "-m", "adapters.cli"]
    return subprocess.run([*exe, *args], capture_output=True, text=stdin is None, input=stdin, env=full_env,
                          timeout=180, check=False)


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(params=["file", "redis"])
def seeded_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = str(tmp_path / "log") if request.param == "file" else str(request.getfixturevalue("redis_url"))
    store = open_store(url)
    seed(store)
    store.close()
    return url


def test_read_commands_human_and_json(seeded_url: str) -> None:
    u = ["--url", seeded_url]
    sessions = as_json(eventlog(*u, "sessions", "--json"))
    assert {s["session_id"] for s in sessions["sessions"]} == {"s1", "s2"} and sessions["total"] == 2
    assert as_json(eventlog("sessions", "--user", "alice", "--json", *u))["sessions"][0]["runs"] == 2  # flags after
    human = eventlog(*u, "sessions")
    assert human.returncode == 0 and "s1" in human.stdout and "alice" in human.stdout and "{" not in human.stdout
    memories = as_json(eventlog(*u, "memories", "--user", "alice", "--json"))
    assert memories["memories"][0]["memory"] == "likes green tea" and memories["memories"][0]["changes"] == 2
    audit = as_json(eventlog(*u, "audit", "--agent", "coder", "--user", "alice", "--json"))
    assert {e["type"] for e in audit["events"]} == {"memory.added", "run.recorded", "session.state_changed",
                                                     "memory.updated"}
    lines = eventlog(*u, "audit", "--agent", "planner", "--jsonl").stdout.strip().splitlines()
    assert all(json.loads(line)["agent_id"] == "planner" for line in lines) and len(lines) == 3
    replay = as_json(eventlog(*u, "replay", "--session", "s1", "--json"))
    assert [t["output"] for t in replay["turns"]] == ["plan it", "code it"]
    assert "plan it" in eventlog(*u, "replay", "--session", "s1").stdout
    tail = as_json(eventlog(*u, "tail", "--json", "--stream", "user/"))
    assert {e["stream"] for e in tail["events"]} == {"user/alice", "user/bob"}
    stats = as_json(eventlog(*u, "stats", "--json"))
    assert stats["events"] == 13 and stats["by_actor"]["agent:coder"] >= 4
    assert "by type" in eventlog(*u, "stats").stdout


def test_time_travel_commands(seeded_url: str) -> None:
    u = ["--url", seeded_url]
    events = as_json(eventlog(*u, "tail", "--json"))["events"]
    run2 = next(e for e in events if e["type"] == "run.recorded" and "code it" in e["summary"])
    before = next(e for e in events if e["type"] == "memory.added")
    state = as_json(eventlog(*u, "state", "--session", "s1", "--at", before["id"], "--json"))
    assert state["runs"] == 1 and state["state"] == {"step": 1}
    changes = as_json(eventlog(*u, "diff", "--session", "s1", before["id"], run2["id"], "--json"))["changes"]
    assert [c["kind"] for c in changes] == ["run.added"]
    forked = as_json(eventlog(*u, "fork", "--session", "s1", "--at", before["id"], "--new", "s1-copy", "--json"))
    assert forked["session_id"] == "s1-copy"
    assert as_json(eventlog(*u, "replay", "--session", "s1-copy", "--json"))["turns"][0]["output"] == "plan it"


def test_bad_input_exit_2_one_line_no_traceback(seeded_url: str, tmp_path: Path) -> None:
    u = ["--url", seeded_url]
    cases = [
        (u + ["replay", "--session", "nope"], "unknown session"),
        (u + ["audit", "--since", "yesterday-ish"], "bad time"),
        (u + ["state", "--session", "s1", "--at", "no-such-event"], "no event with id"),
        (["--url", "ftp://x/y", "stats"], "unknown store URL scheme"),
        (["--url", "redis://:hunter2@127.0.0.1:1/0", "stats"], "unavailable"),
        (u + ["sync"], "no fallback"),
    ]
    for args, expected in cases:
        done = eventlog(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert expected in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert "hunter2" not in done.stderr + done.stdout
        assert len(done.stderr.strip().splitlines()) <= 3


def test_verify_exit_codes_and_tamper(tmp_path: Path) -> None:
    url = str(tmp_path / "log")
    store = open_store(url)
    seed(store)
    store.close()
    ok = as_json(eventlog("--url", url, "verify", "--json"))
    assert ok["ok"] is True and ok["events"] == 13
    assert as_json(eventlog("--url", url, "verify", "--checkpoint", "--json"))["checkpoint"]["position"] == 14
    seg = tmp_path / "log" / "00000001.jsonl"
    seg.write_bytes(seg.read_bytes().replace(b"likes tea", b"likes rum", 1))
    (tmp_path / "log" / "index.msgpack").unlink()
    bad = eventlog("--url", url, "verify", "--json")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["first_break"]["kind"] == "edited" and report["first_break"]["stream"] == "user/alice"
    assert eventlog("--url", url, "verify", "--expect-root", "0" * 64).returncode == 1


def test_export_import_round_trip_is_idempotent(seeded_url: str, tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    assert eventlog("--url", seeded_url, "export", "--out", str(dump)).returncode == 0
    assert len(dump.read_bytes().splitlines()) == 13
    target = str(tmp_path / "copy")
    first = as_json(eventlog("--url", target, "import", str(dump), "--json"))
    assert first["imported"] == 13
    again = as_json(eventlog("--url", target, "import", str(dump), "--json"))
    assert again["imported"] == 0 and again["already_present"] == 13
    states = []
    for url in (seeded_url, target):
        runner = ProjectionRunner(open_store(url), all_projections(), use_snapshots=False)
        runner.catch_up()
        import msgspec

        states.append({k: msgspec.msgpack.encode(v) for k, v in runner.states.items()
                       if k not in ("actors",)})
    assert states[0] == states[1]


def test_doctor_flags_redis_without_persistence(redis_url: str, tmp_path: Path) -> None:
    done = eventlog("--url", redis_url, "doctor", "--json")
    assert done.returncode == 1
    checks = {c["check"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["redis reachable"]["status"] == "ok"
    assert checks["redis persistence"]["status"] == "error" and "LOSES" in checks["redis persistence"]["detail"]
    file_doc = as_json(eventlog("--url", str(tmp_path / "log"), "doctor", "--json"))
    assert {c["status"] for c in file_doc["checks"]} == {"ok"}


def test_sync_with_fallback(redis_url: str, tmp_path: Path) -> None:
    done = as_json(eventlog("--url", redis_url, "--fallback", str(tmp_path / "fb"), "sync", "--json"))
    assert done["replayed"] == 0 and done["remaining"] == 0


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


def test_tail_follow_prints_new_events_and_stops_cleanly(tmp_path: Path) -> None:
    import signal
    import time

    url = str(tmp_path / "log")
    store = open_store(url)
    seed(store)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "EVENTLOG_URL", "MEMORY_DIR")}
    env.update({"PYTHONPATH": str(REPO), "NO_COLOR": "1"})
    proc = subprocess.Popen([sys.executable, "-m", "adapters.cli", "--url", url, "tail", "--follow", "--jsonl",
                             "--stream", "session/live"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        time.sleep(2.0)
        from eventlog import MessageAppended, new_event

        store.append("session/live", [new_event(MessageAppended(session_id="live", role="user", content="now"))])
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert json.loads(line)["stream"] == "session/live"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert proc.returncode == 0
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read().decode()
