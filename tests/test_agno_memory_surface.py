"""The whole memory surface of Agno 3.1's BaseDb on EventLogDb, against Agno's SqliteDb.

Learnings, compactions, tool results, transcripts, owner transfer, run cancellation and span
statistics: every call is made on both databases and the answers compared (timestamps aside,
which each db takes from the clock itself); every write is checked to be an event naming its
author. Also: which BaseDb methods EventLogDb implements, listed programmatically.
"""

from __future__ import annotations

import inspect
import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from agno.db.base import BaseDb
from agno.db.sqlite import SqliteDb
from agno.run.agent import RunOutput
from agno.run.base import RunStatus
from agno.session import AgentSession

from adapters.agno import EventLogDb
from adapters.agno.control_plane import FEATURES, METHODS, ControlPlaneNotSupported

STAMPS = ("created_at", "updated_at", "last_learning_updated_at", "mtime")


def strip(value: Any) -> Any:
    """The answer without the times each db stamped itself."""
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in STAMPS}
    if isinstance(value, (list, tuple)):
        return type(value)(strip(v) for v in value)
    return value


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock that moves one second per reading, so 'most recent first' has no ties."""
    ticks = itertools.count(1_800_000_000)
    monkeypatch.setattr(time, "time", lambda: float(next(ticks)))


@pytest.fixture(params=["memory", "file", "redis"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[SqliteDb, EventLogDb]:
    url = {"memory": "memory://", "file": str(tmp_path / "log")}.get(request.param)
    if url is None:
        url = str(request.getfixturevalue("redis_url"))
    ours = EventLogDb(url)
    request.addfinalizer(ours.close)
    return SqliteDb(db_file=str(tmp_path / "agno.db")), ours


def same(pair: tuple[SqliteDb, EventLogDb], method: str, *args: Any, **kwargs: Any) -> Any:
    sqlite, ours = pair
    expected = getattr(sqlite, method)(*args, **kwargs)
    got = getattr(ours, method)(*args, **kwargs)
    assert strip(got) == strip(expected), method
    return got


def both(pair: tuple[SqliteDb, EventLogDb], method: str, *args: Any, **kwargs: Any) -> None:
    """The same call on both, answers not compared (the ones EventLogDb had before this
    suite are compared in test_agno_parity.py)."""
    for db in pair:
        getattr(db, method)(*args, **kwargs)


def events_of(db: EventLogDb, table: str) -> list[Any]:
    return list(db.store.read(f"records/{table}"))


# --- learnings --------------------------------------------------------------------------------

def seed_learnings(pair: tuple[SqliteDb, EventLogDb]) -> None:
    rows = [
        ("l1", "user_profile", {"name": "Sarah Chen", "likes": "tea"}, "u1", "a1", None, "s1", "user"),
        ("l2", "user_profile", {"name": "Bob"}, "u2", "a1", None, "s2", "user"),
        ("l3", "entity_memory", {"fact": "multi tenant café"}, None, "a2", "t1", None, "global"),
        ("l4", "session_context", {"summary": "50% off"}, "u1", "a2", None, "s3", "user"),
    ]
    for lid, kind, content, user, agent, team, session, ns in rows:
        same(pair, "upsert_learning", id=lid, learning_type=kind, content=content, user_id=user, agent_id=agent,
             team_id=team, session_id=session, namespace=ns, metadata={"n": lid})


def test_learnings_answer_as_sqlite(pair: tuple[SqliteDb, EventLogDb]) -> None:
    seed_learnings(pair)
    same(pair, "upsert_learning", id="l1", learning_type="user_profile", content={"name": "Sarah Chen", "likes": "coffee"},
         user_id="u1", metadata=None)  # an update keeps identity columns and created_at
    same(pair, "get_learning", learning_type="user_profile", user_id="u1")
    same(pair, "get_learning", learning_type="nothing")
    for kwargs in ({}, {"user_id": "u1"}, {"agent_id": "a2"}, {"learning_type": "user_profile", "limit": 1},
                   {"namespace": "global"}):
        same(pair, "get_learnings", **kwargs)
    same(pair, "get_learning_by_id", "l1")
    same(pair, "get_learning_by_id", "missing")
    for query in ("sarah chen", "SARAH_CHEN", "multi-tenant", "café", "50%", "%", "  ", "tea"):
        same(pair, "search_learnings", query)
    same(pair, "search_learnings", "sarah", user_id="u2")
    for kwargs in ({}, {"user_id": "u1"}, {"user_id": "u1", "include_global": True}, {"limit": 2, "page": 2},
                   {"sort_by": "created_at", "sort_order": "asc"}, {"sort_by": "learning_type"},
                   {"sort_by": "no_such_column"}, {"entity_type": "person"}):
        same(pair, "list_learnings", **kwargs)
    for kwargs in ({}, {"limit": 1, "page": 2}, {"sort_by": "user_id", "sort_order": "asc"},
                   {"learning_type": "session_context"}, {"user_id": "u2"}):
        same(pair, "get_learnings_user_stats", **kwargs)
    with pytest.raises(ValueError):
        pair[1].get_learnings_user_stats(page=2)
    assert same(pair, "update_learning", "l2", content={"name": "Robert"}, metadata={"v": 2}) is True
    assert same(pair, "update_learning", "gone", content={}) is False
    assert same(pair, "delete_user_learnings", "u1", learning_type="session_context") == 1
    assert same(pair, "delete_learning", "l3") is True
    assert same(pair, "delete_learning", "l3") is False
    assert same(pair, "delete_user_learnings", "u1") == 1
    same(pair, "list_learnings")


def test_learning_writes_are_events_with_their_author(pair: tuple[SqliteDb, EventLogDb]) -> None:
    seed_learnings(pair)
    ours = pair[1]
    ours.update_learning("l1", content={"x": 1})
    ours.delete_user_learnings("u2")
    events = events_of(ours, "learnings")
    assert [type(e.payload).__name__ for e in events] == ["RecordUpserted"] * 5 + ["RecordDeleted"]
    assert (events[0].actor.user_id, events[0].actor.agent_id, events[0].actor.session_id) == ("u1", "a1", "s1")
    assert events[4].actor.user_id == "u1" and events[5].actor.user_id == "u2"
    # time travel: the learning as it was before the update
    past = ours.as_of(events[3].id)
    assert past.get_learning_by_id("l1")["content"] == {"name": "Sarah Chen", "likes": "tea"}
    assert past.get_learning_by_id("l2") is not None and ours.get_learning_by_id("l2") is None


def test_rows_of_the_earlier_learning_shape_still_read(tmp_path: Path) -> None:
    from adapters.agno.core import actor_of
    from eventlog import RecordUpserted

    db = EventLogDb("memory://")
    old = {"id": "old", "learning_type": "user_profile", "content": {"a": 1}, "user_id": "u", "agent_id": None,
           "team_id": None, "session_id": None, "namespace": None, "entity_id": None, "entity_type": None,
           "metadata": None, "created_at": 1, "updated_at": 2}
    db._emit("records/learnings", [RecordUpserted(table="learnings", key="old", record=old)], actor_of(old))
    row = db.get_learning_by_id("old")
    assert row is not None and row["learning_id"] == "old" and "id" not in row
    assert db.list_learnings()[1] == 1 and db.update_learning("old", {"a": 2}) is True
    assert db.get_learning("user_profile", user_id="u") == {"content": {"a": 2}}


# --- compactions, tool results, transcripts ----------------------------------------------------

def compaction(cid: str, session: str, created: int, archived: str | None) -> dict[str, Any]:
    return {"compaction_id": cid, "session_id": session, "run_id": f"r-{cid}", "user_id": "u1",
            "first_kept_message_id": "m9", "summary": f"summary {cid}", "archived_messages": archived,
            "messages_compacted": 4, "tokens_before": 900, "tokens_after": 100, "created_at": created}


def test_compactions_answer_as_sqlite(pair: tuple[SqliteDb, EventLogDb]) -> None:
    same(pair, "upsert_compaction", compaction("c1", "s1", 10, "User: the Blue whale\nAssistant: yes"))
    same(pair, "upsert_compaction", compaction("c2", "s1", 20, "User: red panda"))
    same(pair, "upsert_compaction", compaction("c3", "s2", 30, None))
    same(pair, "upsert_compaction", {**compaction("c1", "s1", 99, "rewritten"), "summary": "no"})  # immutable
    same(pair, "get_compaction", "c1")
    same(pair, "get_compaction", "nope")
    same(pair, "get_compactions_for_session", "s1")
    same(pair, "get_compactions_for_session", "s1", limit=1)
    for query in ("blue WHALE", ["panda", "whale"], "", [], "tiger"):
        same(pair, "search_compactions", "s1", query)
    same(pair, "search_compactions", "s2", "anything")
    assert same(pair, "delete_compactions_for_session", "s1") == 2
    assert same(pair, "delete_compactions_for_session", "s1") == 0
    assert [e.actor.user_id for e in events_of(pair[1], "compactions")] == ["u1"] * 5


def tool_result(rid: str, session: str, created: int, expires: int | None, path: str | None = None) -> dict[str, Any]:
    return {"result_id": rid, "namespace": "ns", "path": path or f"/r/{rid}", "session_id": session, "run_id": "r1",
            "tool_call_id": f"call-{rid}", "tool_name": "search", "args_hash": "h", "content_type": "text/plain",
            "size_bytes": 10, "line_count": 1, "preview": f"preview {rid}", "user_id": "u1",
            "created_at": created, "expires_at": expires}


def test_tool_results_answer_as_sqlite(pair: tuple[SqliteDb, EventLogDb]) -> None:
    same(pair, "upsert_tool_result", tool_result("t1", "s1", 10, 100))
    same(pair, "upsert_tool_result", tool_result("t2", "s1", 10, None))
    same(pair, "upsert_tool_result", tool_result("t3", "s2", 30, 50))
    same(pair, "upsert_tool_result", {"result_id": "t1", "namespace": "ns", "path": "/r/t1", "session_id": "s1",
                                      "run_id": "r1", "tool_call_id": "c", "tool_name": "search", "args_hash": "h",
                                      "content_type": "text/plain", "size_bytes": 20, "line_count": 2,
                                      "preview": "new", "created_at": 10})  # expires_at and user_id kept
    same(pair, "get_tool_result", "t1")
    same(pair, "get_tool_result", "none")
    same(pair, "get_tool_results_for_session", "s1")
    same(pair, "get_tool_results_for_session", "s1", limit=1)
    same(pair, "get_expired_tool_results", 60)
    same(pair, "get_expired_tool_results", 1000)
    with pytest.raises(Exception):  # SQLite raises its IntegrityError, we a ValueError
        pair[0].upsert_tool_result(tool_result("t9", "s1", 1, None, path="/r/t2"))
    with pytest.raises(ValueError, match="already holds"):
        pair[1].upsert_tool_result(tool_result("t9", "s1", 1, None, path="/r/t2"))
    assert same(pair, "delete_tool_results", ["t1", "t3", "nope", "t1"]) == 2
    assert same(pair, "delete_tool_results", []) == 0
    same(pair, "get_tool_results_for_session", "s1")


def test_transcripts_answer_as_sqlite(pair: tuple[SqliteDb, EventLogDb]) -> None:
    entries = [{"uuid": "e1", "type": "user", "text": "hi"}, {"uuid": "e2", "type": "assistant", "text": "hello"}]
    same(pair, "append_transcript_entries", "claude", "proj", "cs1", entries, agno_session_id="s1")
    same(pair, "append_transcript_entries", "claude", "proj", "cs1",
         [{"uuid": "e2", "text": "again"}, {"text": "no uuid"}, {"uuid": "e3"}], agno_session_id="s1")
    same(pair, "append_transcript_entries", "claude", "proj", "cs1", [{"uuid": "x1"}], agno_session_id="s1",
         subpath="agents/sub-1")
    same(pair, "append_transcript_entries", "claude", "proj", "cs2", [{"uuid": "y"}], agno_session_id="s2")
    same(pair, "append_transcript_entries", "claude", "proj", "cs2", [], agno_session_id="s2")
    same(pair, "get_transcript_entries", "claude", "proj", "cs1")
    same(pair, "get_transcript_entries", "claude", "proj", "cs1", subpath="agents/sub-1")
    same(pair, "get_transcript_entries", "claude", "other", "cs1")
    sessions = same(pair, "list_transcript_sessions", "claude", "proj")
    assert sorted(s["session_id"] for s in sessions) == ["cs1", "cs2"]
    same(pair, "list_transcript_subpaths", "claude", "proj", "cs1")
    same(pair, "delete_transcript", "claude", "proj", "cs1", subpath="agents/sub-1")
    same(pair, "list_transcript_subpaths", "claude", "proj", "cs1")
    same(pair, "delete_transcript", "claude", "proj", "cs1")
    same(pair, "get_transcript_entries", "claude", "proj", "cs1")
    assert {e.actor.session_id for e in events_of(pair[1], "transcripts")} == {"s1", "s2"}


def session_with_run(pair: tuple[SqliteDb, EventLogDb], session_id: str, user_id: str,
                     status: RunStatus = RunStatus.completed) -> None:
    """A session and one run of it on both dbs (SqliteDb keeps runs only through upsert_run)."""
    run = RunOutput(run_id=f"run-{session_id}", agent_id="a1", session_id=session_id, user_id=user_id,
                    content="", status=status)
    both(pair, "upsert_session", AgentSession(session_id=session_id, agent_id="a1", user_id=user_id, created_at=1))
    both(pair, "upsert_run", run, session_id, user_id=user_id)


def test_deleting_a_session_deletes_its_transcripts_compactions_and_tool_results(
        pair: tuple[SqliteDb, EventLogDb]) -> None:
    for sid in ("s1", "s2", "s3"):
        session_with_run(pair, sid, "u1")
        same(pair, "append_transcript_entries", "claude", "p", f"c-{sid}", [{"uuid": sid}], agno_session_id=sid)
        same(pair, "upsert_compaction", compaction(f"c-{sid}", sid, 1, "x"))
        same(pair, "upsert_tool_result", tool_result(f"t-{sid}", sid, 1, None))
    assert same(pair, "delete_session", "s1", user_id="someone else") is False
    assert same(pair, "delete_session", "s1") is True
    same(pair, "delete_sessions", ["s2", "s3"], user_id="u2")  # not theirs: nothing cascades
    for sid in ("s1", "s2", "s3"):
        same(pair, "get_transcript_entries", "claude", "p", f"c-{sid}")
        same(pair, "get_compactions_for_session", sid)
        same(pair, "get_tool_results_for_session", sid)
    same(pair, "delete_sessions", ["s1", "s2", "s3"])
    same(pair, "get_compactions_for_session", "s2")


# --- owner transfer, cancellation, span statistics --------------------------------------------

def test_reassign_session_owner_as_sqlite(pair: tuple[SqliteDb, EventLogDb]) -> None:
    session_with_run(pair, "idle", "u1")
    session_with_run(pair, "busy", "u1", RunStatus.running)
    assert same(pair, "reassign_session_owner", "idle", previous_user_id="u2", user_id="u3") is False
    assert same(pair, "reassign_session_owner", "busy", previous_user_id="u1", user_id="u3") is False
    assert same(pair, "reassign_session_owner", "idle", previous_user_id="u1", user_id="u3") is True
    assert same(pair, "reassign_session_owner", "nope", previous_user_id="u1", user_id="u3") is False
    assert pair[1].get_session("idle", user_id="u3") is not None
    assert pair[1].get_session("idle", user_id="u1") is None
    assert [db.get_run("run-idle").user_id for db in pair] == ["u1", "u1"]  # history not rewritten
    last = list(pair[1].store.read("session/idle"))[-1]
    assert type(last.payload).__name__ == "SessionFieldsChanged" and last.actor.user_id == "u1"


def test_cancel_pending_run_as_sqlite(pair: tuple[SqliteDb, EventLogDb]) -> None:
    session_with_run(pair, "p", "u1", RunStatus.pending)
    session_with_run(pair, "r", "u1", RunStatus.running)
    session_with_run(pair, "d", "u1")
    with pytest.raises(ValueError):
        pair[1].cancel_pending_run("run-d", session_id="d", reason="x", expected_status="COMPLETED")
    assert same(pair, "cancel_pending_run", "run-p", session_id="p", reason="stale", user_id="u2") is False
    assert same(pair, "cancel_pending_run", "run-p", session_id="wrong", reason="stale", user_id="u1") is False
    assert same(pair, "cancel_pending_run", "run-p", session_id="p", reason="stale", user_id="u1") is True
    assert same(pair, "cancel_pending_run", "run-p", session_id="p", reason="stale", user_id="u1") is False
    assert same(pair, "cancel_pending_run", "run-r", session_id="r", reason="gone", user_id="u1") is False
    assert same(pair, "cancel_pending_run", "run-r", session_id="r", reason="gone", user_id="u1",
                expected_status="RUNNING") is True
    assert same(pair, "cancel_pending_run", "run-d", session_id="d", reason="x", user_id="u1") is False
    for rid, status in (("run-p", "CANCELLED"), ("run-r", "CANCELLED"), ("run-d", "COMPLETED")):
        assert [db.get_run(rid).status.value for db in pair] == [status, status]
    assert [db.get_run("run-p").content for db in pair] == ["stale", "stale"]


def test_span_stats_as_sqlite(pair: tuple[SqliteDb, EventLogDb]) -> None:
    from datetime import datetime, timezone

    from agno.tracing.schemas import Span, Trace

    def span(i: int, name: str, kind: str, trace: str, ms: int, error: bool = False) -> Span:
        start = datetime(2026, 1, 1, 0, 0, i, tzinfo=timezone.utc)
        return Span(span_id=f"sp{i}", trace_id=trace, parent_span_id=None, name=name, span_kind="INTERNAL",
                    status_code="ERROR" if error else "OK", status_message=None, duration_ms=ms, start_time=start,
                    end_time=start, attributes={"openinference.span.kind": kind, "input.value": "secret"},
                    created_at=start)

    for tid, agent in (("tr1", "a1"), ("tr2", "a2")):
        now = datetime(2026, 1, 1, tzinfo=timezone.utc)
        same(pair, "upsert_trace", Trace(trace_id=tid, name="run", status="OK", start_time=now, end_time=now,
                                         duration_ms=1, total_spans=1, error_count=0, run_id=None, session_id=None,
                                         user_id=None, agent_id=agent, team_id=None, workflow_id=None,
                                         created_at=now))
    spans = [span(1, "llm", "LLM", "tr1", 100), span(2, "llm", "LLM", "tr1", 300, error=True),
             span(3, "search", "TOOL", "tr2", 50), span(4, "llm", "LLM", "tr2", 200), span(5, "agent", "AGENT", "tr1", 7)]
    same(pair, "create_spans", spans)
    for kwargs in ({}, {"agent_id": "a1"}, {"span_type": "LLM"}, {"name": "search"},
                   {"sort_by": "avg_duration_ms", "sort_order": "asc"}, {"sort_by": "p95_duration_ms"},
                   {"sort_by": "error_count"}, {"sort_by": "last_called_at"}, {"limit": 1, "page": 2},
                   {"start_time": datetime(2026, 1, 1, 0, 0, 3, tzinfo=timezone.utc)},
                   {"end_time": datetime(2026, 1, 1, 0, 0, 2, tzinfo=timezone.utc)}):
        same(pair, "get_span_stats", **kwargs)


# --- what is covered ---------------------------------------------------------------------------

def public_methods(cls: type) -> list[str]:
    return sorted(n for n, v in inspect.getmembers(cls) if not n.startswith("_") and callable(v))


def test_every_basedb_method_is_implemented_or_a_named_control_plane_refusal() -> None:
    base = public_methods(BaseDb)
    implemented = [n for n in base if getattr(EventLogDb, n) is not getattr(BaseDb, n) and n not in METHODS]
    refused = [n for n in base if n in METHODS]
    assert sorted(implemented + refused) == base  # nothing falls through to BaseDb's stubs
    assert not set(METHODS) - set(base), "a control-plane name that BaseDb does not have"
    # the memory domain the README lists is all implemented
    for name in ("list_learnings", "get_learnings_user_stats", "search_learnings", "update_learning",
                 "get_learning_by_id", "delete_user_learnings", "upsert_compaction", "search_compactions",
                 "upsert_tool_result", "get_expired_tool_results", "append_transcript_entries",
                 "reassign_session_owner", "get_span_stats", "cancel_pending_run", "get_sessions", "upsert_run"):
        assert name in implemented
    print(f"BaseDb: {len(base)} public methods; EventLogDb implements {len(implemented)}, "
          f"refuses {len(refused)} control-plane methods in {len(FEATURES)} features")


def test_from_dict_rebuilds_the_same_db(tmp_path: Path) -> None:
    db = EventLogDb(str(tmp_path / "log"), id="mine")
    db.upsert_learning(id="l", learning_type="t", content={"a": 1})
    again = EventLogDb.from_dict(db.to_dict())
    assert isinstance(again, EventLogDb) and again.id == "mine" and again.get_learning_by_id("l") is not None


def test_control_plane_methods_raise_an_error_that_says_what_to_do() -> None:
    db = EventLogDb("memory://")
    for name, feature in METHODS.items():
        with pytest.raises(ControlPlaneNotSupported) as caught:
            getattr(db, name)()
        assert isinstance(caught.value, NotImplementedError)
        assert feature in str(caught.value) and name in str(caught.value) and "AgentOS(db=" in str(caught.value)
    assert list(db.store.read_all()) == []  # nothing written


@pytest.mark.parametrize("kind", ["file", "redis"])
def test_forget_user_erases_their_learnings_compactions_tool_results_and_transcripts(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from eventlog import open_store
    from eventlog.crypto import ERASED

    url = str(tmp_path / "log") if kind == "file" else str(request.getfixturevalue("redis_url"))
    db = EventLogDb(store=open_store(url, encrypt=True))
    for user in ("eve", "bob"):
        db.upsert_session(AgentSession(session_id=f"s-{user}", agent_id="a1", user_id=user, created_at=1))
        db.upsert_learning(id=f"l-{user}", learning_type="user_profile", content={"name": user.title()},
                           user_id=user, metadata={"source": "chat"})
        db.upsert_compaction({**compaction(f"c-{user}", f"s-{user}", 1, f"{user} said secret things"),
                              "user_id": user})
        db.upsert_tool_result({**tool_result(f"t-{user}", f"s-{user}", 1, None), "user_id": user,
                               "preview": f"{user}'s bank balance"})
        db.append_transcript_entries("claude", "p", f"cs-{user}", [{"uuid": "1", "text": f"{user} here"}],
                                     agno_session_id=f"s-{user}")
    raw = b"".join(str(e.payload).encode() for e in db.store.inner.read_all())  # type: ignore[attr-defined]
    assert b"Eve" not in raw and b"bank balance" not in raw  # ciphertext at rest
    db.forget_user("eve")
    assert db.get_learning_by_id("l-eve")["content"] == {} and db.get_learning_by_id("l-eve")["metadata"] == {}
    assert db.get_compaction("c-eve")["summary"] == ERASED
    assert db.get_compaction("c-eve")["archived_messages"] == ERASED
    assert db.search_compactions("s-eve", "secret") == []
    assert db.get_tool_result("t-eve")["preview"] == ERASED
    assert db.get_transcript_entries("claude", "p", "cs-eve") == [{}]
    assert db.search_learnings("eve") == []
    # bob is untouched
    assert db.get_learning_by_id("l-bob")["content"] == {"name": "Bob"}
    assert db.search_compactions("s-bob", "secret")[0]["compaction_id"] == "c-bob"
    assert db.get_tool_result("t-bob")["preview"] == "bob's bank balance"
    assert db.get_transcript_entries("claude", "p", "cs-bob") == [{"uuid": "1", "text": "bob here"}]
    assert db.store.verify().ok


def test_transcript_rows_are_agnos() -> None:
    """Our copy of Agno's row builder (kept for older agno releases) builds the same rows."""
    from agno.db.transcripts import transcript_rows as agnos

    from adapters.agno.extras import transcript_rows

    entries = [{"uuid": "a", "x": "é"}, {"y": 2}, {"uuid": "", "z": [1]}]
    ours = transcript_rows("claude", "p", "s", None, "as", entries, 4)
    theirs = agnos("claude", "p", "s", None, "as", entries, 4)
    assert strip(ours) == strip(theirs) and all(isinstance(r["created_at"], int) for r in ours)
