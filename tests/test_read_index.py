"""The shared read index (SQLite beside a file log, keys beside a Redis log) against the truth:
a fresh fold of the same log by the same projections.

Real files and a real redis-server; hypothesis over random event sequences and random batch
boundaries; two processes on one store; a writer killed between its append and the index
update; a schema bump; a corrupt or missing index file; Redis Cluster partitions.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agno.db.base import SessionType
from agno.db.schemas.memory import UserMemory
from agno.session import AgentSession
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.agno import EventLogDb
from eventlog import (
    Actor,
    EventStore,
    RecordDeleted,
    RecordUpserted,
    RunDeleted,
    RunRecorded,
    SessionDeleted,
    SessionRenamed,
    SessionStarted,
    SessionStateChanged,
    UserMemoriesCleared,
    UserMemoryAdded,
    UserMemoryDeleted,
    UserMemoryUpdated,
    WorkflowStepCompleted,
    new_event,
    open_store,
)
from eventlog.names import record_stream, session_stream, user_stream, workflow_stream
from projections.index import Indexer, ReadIndex, open_index
from projections.index import base as index_base
from projections.index.check import index_differences
from projections.index.sqlite import SqliteIndex

REPO = Path(__file__).resolve().parents[1]

# --- random logs ---------------------------------------------------------------------------

SIDS = ["s1", "s2", "s3", "s4"]
USERS = ["alice", "bob", None]
MIDS = ["m1", "m2", "m3", "m4", "m5"]


def _op() -> st.SearchStrategy[tuple[str, Any]]:
    sid = st.sampled_from(SIDS)
    user = st.sampled_from(USERS)
    text = st.text(alphabet="abcé<>", max_size=6)
    topics = st.lists(st.sampled_from(["food", "work", "tea"]), max_size=2, unique=True)
    return st.one_of(
        st.builds(lambda s, u, k, a: (session_stream(s), SessionStarted(session_id=s, user_id=u, session_type=k,
                                                                          agent_id=a, created_at=1000)),
                  sid, user, st.sampled_from(["agent", "team"]), st.sampled_from(["planner", "coder", None])),
        st.builds(lambda s, r, t: (session_stream(s), RunRecorded(session_id=s, run_id=f"r{r}", run={"text": t})),
                  sid, st.integers(0, 6), text),
        st.builds(lambda s, r: (session_stream(s), RunDeleted(session_id=s, run_id=f"r{r}")), sid, st.integers(0, 6)),
        st.builds(lambda s, n: (session_stream(s), SessionRenamed(session_id=s, name=n)), sid, text),
        st.builds(lambda s, t: (session_stream(s), SessionStateChanged(session_id=s, set={"k": t})), sid, text),
        st.builds(lambda s: (session_stream(s), SessionDeleted(session_id=s)), sid),
        st.builds(lambda m, u, t, ts: (user_stream(u), UserMemoryAdded(memory_id=m, user_id=u, memory=t, topics=ts)),
                  st.sampled_from(MIDS), user, text, topics),
        st.builds(lambda m, u, t, ts: (user_stream(u), UserMemoryUpdated(memory_id=m, user_id=u, memory=t, topics=ts)),
                  st.sampled_from(MIDS), user, text, topics),
        st.builds(lambda m, u: (user_stream(u), UserMemoryDeleted(memory_id=m, user_id=u)), st.sampled_from(MIDS), user),
        st.builds(lambda u: ("memories/all", UserMemoriesCleared(user_id=u)), user),
        st.builds(lambda k, t: (record_stream("evals"), RecordUpserted(table="evals", key=k, record={"v": t})),
                  st.sampled_from(["e1", "e2"]), text),
        st.builds(lambda k: (record_stream("evals"), RecordDeleted(table="evals", key=k)), st.sampled_from(["e1", "e2"])),
        st.builds(lambda w, n: (workflow_stream(w, "s1"), WorkflowStepCompleted(workflow=w, session_id="s1", step=n)),
                  st.sampled_from(["deploy", "review"]), st.integers(1, 3)),
    )


def _append_all(store: EventStore, ops: list[tuple[str, Any]], agent: str = "planner") -> None:
    for stream, payload in ops:
        store.append(stream, [new_event(payload, actor=Actor(agent_id=agent))])


@pytest.fixture(params=["file", "redis"])
def indexed_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], EventStore]]:
    """Opens fresh stores of one kind that have a shared index (file, real Redis)."""
    opened: list[EventStore] = []
    counter = iter(range(1_000_000))

    def make() -> EventStore:
        n = next(counter)
        url = str(tmp_path / f"log{n}") if request.param == "file" else f"{request.getfixturevalue('redis_url')}?prefix=i{n}"
        store = open_store(url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_op(), min_size=1, max_size=40), cuts=st.lists(st.integers(1, 40), max_size=4),
       commit_every=st.integers(1, 50))
def test_the_index_equals_a_fresh_fold_whatever_the_events_and_batches(
        indexed_store: Callable[[], EventStore], ops: list[tuple[str, Any]], cuts: list[int],
        commit_every: int) -> None:
    store = indexed_store()
    index = open_index(store)
    assert index is not None
    try:
        indexer = Indexer(store, index, commit_every=commit_every)
        start = 0
        for cut in sorted(set(cuts)) + [len(ops)]:  # the index catches up between the appends
            _append_all(store, ops[start:cut])
            start = max(start, cut)
            indexer.catch_up()
            assert index_differences(store, index) == []
        assert index.cursors() == store.last_position().offsets
    finally:
        index.close()


# --- through EventLogDb ----------------------------------------------------------------------


def _session(i: int, user: str) -> AgentSession:
    return AgentSession(session_id=f"s{i:03d}", agent_id="planner", user_id=user, created_at=1_000 + i,
                        updated_at=2_000 + i, session_data={"session_name": f"chat {i}"})


def test_pages_of_sessions_and_memories_come_from_the_index_in_agnos_order(
        indexed_store: Callable[[], EventStore]) -> None:
    store = indexed_store()
    db = EventLogDb(store=store)
    ref = EventLogDb(store=store, shared_index=False)  # the in-process fold: the reference
    assert db.indexer is not None and ref.indexer is None
    for i in range(30):
        db.upsert_session(_session(i, ["alice", "bob", "carol"][i % 3]))
        db.upsert_user_memory(UserMemory(memory=f"fact {i}", memory_id=f"m{i}", user_id=["alice", "bob"][i % 2],
                                         topics=[["tea"], ["work", "tea"]][i % 2]))
    for kwargs in ({}, {"limit": 5, "page": 2, "sort_by": "updated_at"}, {"sort_by": "created_at", "sort_order": "asc"},
                   {"user_id": "bob", "limit": 3, "page": 1, "sort_by": "updated_at"},
                   {"component_id": "planner", "session_type": SessionType.AGENT, "limit": 4, "page": 3},
                   {"session_name": "chat 1", "limit": 2, "page": 1, "sort_by": "updated_at"},
                   {"start_timestamp": 1_010, "end_timestamp": 1_020, "sort_by": "updated_at"}):
        ours, total = db.get_sessions(deserialize=False, **kwargs)
        theirs, ref_total = ref.get_sessions(deserialize=False, **kwargs)
        assert [s["session_id"] for s in ours] == [s["session_id"] for s in theirs], kwargs
        assert total == ref_total, kwargs
    for kwargs in ({}, {"limit": 7, "page": 2}, {"user_id": "bob"}, {"sort_by": "updated_at", "limit": 3}):
        ours, total = db.get_user_memories(deserialize=False, **kwargs)
        theirs, ref_total = ref.get_user_memories(deserialize=False, **kwargs)
        assert [m["memory_id"] for m in ours] == [m["memory_id"] for m in theirs] and total == ref_total, kwargs
    assert sorted(db.get_all_memory_topics()) == sorted(ref.get_all_memory_topics()) == ["tea", "work"]
    assert db.get_user_memory_stats() == ref.get_user_memory_stats()
    db.delete_user_memories([f"m{i}" for i in range(0, 30, 2)])  # every memory of alice
    assert db.get_user_memory_stats() == ref.get_user_memory_stats()
    assert db.get_all_memory_topics() == ["tea", "work"]
    db.delete_user_memories([f"m{i}" for i in range(1, 30, 2)])
    assert db.get_all_memory_topics() == ref.get_all_memory_topics() == []
    db.close()
    ref.close()


_TIED = st.sampled_from([1_000, 1_000, 1_001, 1_002])  # seconds: most rows tie with another


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sessions=st.lists(st.tuples(st.sampled_from(["alice", "bob"]), _TIED, _TIED), min_size=1, max_size=14),
       memories=st.lists(st.tuples(st.sampled_from(["alice", "bob"]), _TIED), max_size=10),
       pages=st.lists(st.tuples(st.sampled_from([None, "updated_at", "created_at"]), st.sampled_from(["asc", "desc"]),
                                st.sampled_from([None, "alice"]), st.integers(1, 4), st.integers(1, 5)),
                      min_size=1, max_size=8))
def test_pages_keep_agnos_order_of_rows_tied_on_the_second(
        indexed_store: Callable[[], EventStore], sessions: list[tuple[str, int, int]],
        memories: list[tuple[str, int]], pages: list[tuple[str | None, str, str | None, int, int]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A stable sort (InMemoryDb's `apply_sorting`, as the in-process path gives it) keeps
    rows tied on the second in insertion order both ways; the index's time orderings hold
    ties for a descending walk, so ascending pages turn each second's rows around, reading a
    second that runs over the page's edge whole. Every page, both ways, any size, with or
    without a user, must be the in-process page."""
    store = indexed_store()
    db = EventLogDb(store=store)
    ref = EventLogDb(store=store, shared_index=False)
    try:
        for i, (user, created, updated) in enumerate(sessions):
            db.upsert_session(AgentSession(session_id=f"s{i}", agent_id="a", user_id=user, created_at=created,
                                           updated_at=max(created, updated)))
        for i, (user, second) in enumerate(memories):
            monkeypatch.setattr("time.time", lambda second=second: float(second))
            db.upsert_user_memory(UserMemory(memory=f"m{i}", memory_id=f"m{i}", user_id=user))
        monkeypatch.undo()
        for sort_by, order, user, limit, page in pages:
            kwargs: dict[str, Any] = dict(sort_by=sort_by, sort_order=order, limit=limit, page=page, user_id=user,
                                          deserialize=False)
            ours, theirs = db.get_sessions(**kwargs), ref.get_sessions(**kwargs)
            assert [r["session_id"] for r in ours[0]] == [r["session_id"] for r in theirs[0]], kwargs
            assert ours[1] == theirs[1]
            mine, want = db.get_user_memories(**kwargs), ref.get_user_memories(**kwargs)
            assert [m["memory_id"] for m in mine[0]] == [m["memory_id"] for m in want[0]], kwargs
    finally:
        db.close()
        ref.close()


_TOPICS = st.lists(st.sampled_from(["tea", "work", "x|y"]), max_size=3)
_AGENTS = st.sampled_from([None, "planner", "critic"])
_TEAMS = st.sampled_from([None, "crew"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.sampled_from(["m0", "m1", "m2", "m3", "m4", "m5"]), st.sampled_from(["alice", "bob"]),
                              _TOPICS, _TIED, st.booleans(), _AGENTS, _TEAMS), min_size=1, max_size=16),
       queries=st.lists(st.tuples(st.none() | _TOPICS, st.sampled_from([None, "alice", "bob"]),
                                  st.sampled_from([None, "updated_at", "created_at", "memory"]),
                                  st.sampled_from(["asc", "desc"]), st.integers(1, 4), st.integers(1, 3),
                                  _AGENTS, _TEAMS, st.sampled_from([None, "M1", " 10", "m", ""])),
                        min_size=1, max_size=8),
       few=st.sampled_from([0, 1, 3, 2000]))
def test_memory_pages_and_topic_filters_answer_as_the_in_process_path(
        indexed_store: Callable[[], EventStore], ops: list[tuple[str, str, list[str], int, bool, str | None, str | None]],
        queries: list[tuple[list[str] | None, str | None, str | None, str, int, int, str | None, str | None, str | None]],
        few: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """`get_user_memories` over the index — a page of all memories or of a user's, an
    agent's or a team's by insertion, `updated_at` or `created_at`, or the memories of the
    filter's topics or of the smallest of its scopes with the filters (a search too) and
    Agno's sort applied to them — against the in-process fold, whatever was added, updated
    (new topics, a new time, another user, agent or team) or deleted; and the memory
    orderings equal a fresh fold's."""
    store = indexed_store()
    db = EventLogDb(store=store)
    ref = EventLogDb(store=store, shared_index=False)
    try:
        for memory_id, user, topics, second, delete, agent, team in ops:
            if delete:
                db.delete_user_memory(memory_id)
                continue
            monkeypatch.setattr("time.time", lambda second=second: float(second))
            db.upsert_user_memory(UserMemory(memory=f"{memory_id} {second}", memory_id=memory_id, user_id=user,
                                             topics=topics, agent_id=agent, team_id=team))
        monkeypatch.undo()
        # (a search of all memories places its few matches itself, and walks the ordering
        # for many: each way, whatever counts as few)
        monkeypatch.setattr("projections.index.sqlite.FEW_MATCHES", few)
        monkeypatch.setattr("projections.index.redis.FEW_IN_SCRIPT", few)
        for topics, user, sort_by, order, limit, page, agent, team, search in queries:
            kwargs: dict[str, Any] = dict(topics=topics, user_id=user, sort_by=sort_by, sort_order=order, limit=limit,
                                          page=page, agent_id=agent, team_id=team, search_content=search,
                                          deserialize=False)
            mine, want = db.get_user_memories(**kwargs), ref.get_user_memories(**kwargs)
            assert [m["memory_id"] for m in mine[0]] == [m["memory_id"] for m in want[0]], kwargs
            assert mine[1] == want[1], kwargs
        monkeypatch.undo()
        assert db.indexer is not None and index_differences(store, db.indexer.index) == []
    finally:
        db.close()
        ref.close()


@pytest.mark.parametrize(("few", "in_script"), [(0, 50_000), (7, 50_000), (2000, 50_000), (7, 5)])
def test_a_search_of_all_memories_answers_as_the_in_process_path(
        indexed_store: Callable[[], EventStore], few: int, in_script: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """AgentOS's memory search box over all memories, tested in the index: every sort, order
    and page of a rare, a common and an absent needle equals the in-process fold's answer —
    whether its matches are few enough to be placed by the search itself or many (then the
    ordering is walked, or on SQLite the matches sorted, whichever reads less; on Redis, a
    partition with too many rows for one script tested a slice at a time), with times
    tied to the second, memories updated (a new `created_at` passed too), moved and deleted."""
    store = indexed_store()
    db = EventLogDb(store=store)
    ref = EventLogDb(store=store, shared_index=False)
    client = getattr(store, "client", None)
    if client is not None:  # (a hash past this many keys is a table, which HSCAN walks a slice at a time)
        listpack = client.config_get("hash-max-listpack-entries")["hash-max-listpack-entries"]
        client.config_set("hash-max-listpack-entries", 16)
    try:
        for i in range(60):
            monkeypatch.setattr("time.time", lambda i=i: float(1000 + i // 4))  # (four to a second)
            db.upsert_user_memory(UserMemory(memory=f"Fact {i} {'rare' if i % 13 == 5 else 'common'}",
                                             memory_id=f"m{i:02d}", user_id=f"u{i % 3}", created_at=1000 + i // 4))
        monkeypatch.setattr("time.time", lambda: 2000.0)
        # (moved to another user, with a `created_at` of its own: Agno's dict shows that one)
        db.upsert_user_memory(UserMemory(memory="Fact 7 now RARE", memory_id="m07", user_id="u2", created_at=2000))
        db.delete_user_memory("m18")
        monkeypatch.undo()
        monkeypatch.setattr("projections.index.sqlite.FEW_MATCHES", few)
        monkeypatch.setattr("projections.index.redis.FEW_IN_SCRIPT", few)
        # (on Redis, rows past `in_script` are tested a slice at a time: HSCAN's)
        monkeypatch.setattr("projections.index.redis.SEARCH_IN_SCRIPT", in_script)
        monkeypatch.setattr("projections.index.redis.SEARCH_SLICE", 4)
        for needle in ("RARE", "fact", "act 1", "absent", "c"):
            for sort_by in (None, "updated_at", "created_at"):
                for order in ("asc", "desc"):
                    for limit, page in ((5, 1), (5, 3), (7, 2), (20, 4), (None, None)):
                        kwargs: dict[str, Any] = dict(search_content=needle, sort_by=sort_by, sort_order=order,
                                                      limit=limit, page=page, deserialize=False)
                        mine, want = db.get_user_memories(**kwargs), ref.get_user_memories(**kwargs)
                        assert [m["memory_id"] for m in mine[0]] == [m["memory_id"] for m in want[0]], kwargs
                        assert mine[1] == want[1], kwargs
        assert db.indexer is not None and index_differences(store, db.indexer.index) == []
    finally:
        if client is not None:
            client.config_set("hash-max-listpack-entries", listpack)
        db.close()
        ref.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(st.text(alphabet=st.sampled_from('aAbß" *()\'-:ÉéİiΣσς🙂\\NEAR'), max_size=12),
                      min_size=1, max_size=12),
       needles=st.lists(st.text(alphabet=st.sampled_from('aAbß" *()\'-:ÉéİiΣσς🙂\\NEAR'), min_size=1, max_size=6),
                        min_size=1, max_size=6))
def test_a_memory_search_of_any_text_answers_as_the_in_process_path(
        indexed_store: Callable[[], EventStore], texts: list[str], needles: list[str]) -> None:
    """Whatever the memories and the needle hold — quotes, FTS5 operators, case pairs whose
    lower-casing changes their length, letters outside ASCII, a needle that is a piece of a
    character's lower case — the index's search (SQLite's trigram index, Redis's script)
    finds what the in-process test (`needle.lower() in memory.lower()`) finds."""
    store = indexed_store()
    db = EventLogDb(store=store)
    ref = EventLogDb(store=store, shared_index=False)
    try:
        for i, text in enumerate(texts):
            db.upsert_user_memory(UserMemory(memory=text, memory_id=f"m{i}", user_id="u"))
        for needle in needles:
            kwargs: dict[str, Any] = dict(search_content=needle, sort_by="updated_at", sort_order="desc",
                                          deserialize=False)
            mine, want = db.get_user_memories(**kwargs), ref.get_user_memories(**kwargs)
            assert sorted(m["memory_id"] for m in mine[0]) == sorted(m["memory_id"] for m in want[0]), needle
            assert mine[1] == want[1], needle
        long = "".join([*(chr(0x4E00 + i) for i in range(20_000)), *(chr(0x10000 + i) for i in range(20_000))])
        # (40,000 different characters: more pieces than SQLite takes parameters in one statement,
        # at the 999 of older builds too)
        if isinstance(db.indexer.index if db.indexer is not None else None, SqliteIndex):
            import sqlite3
            db.indexer.index._conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # type: ignore[union-attr]
        db.upsert_user_memory(UserMemory(memory="x" + long, memory_id="long", user_id="u"))
        found, total = db.get_user_memories(search_content=long, deserialize=False)
        assert total == 1 and [m["memory_id"] for m in found] == ["long"]
    finally:
        db.close()
        ref.close()


def test_a_memory_search_on_the_file_store_visits_what_holds_its_pieces_not_every_memory(tmp_path: Path) -> None:
    """The file store's index keeps the memories' texts in a trigram index too (FTS5): a
    search of all memories for a rare needle visits the rows that hold it and the trigram
    index's pages, so the statements SQLite runs for it (its virtual machine's steps, the
    trigram index's own page reads included, counted by SQLite's progress handler) grow far
    slower than the memories — a test of every memory takes several steps per memory, ten
    times as many among 20,000 as among 2,000 (measured: ~10,000 and ~100,000 against the
    index's ~220 and ~500) — and stay well under one step per memory."""
    steps: dict[int, int] = {}
    for n in (2_000, 20_000):
        store = open_store(str(tmp_path / f"log{n}"))
        events = [new_event(UserMemoryAdded(memory_id=f"m{i}", user_id=f"u{i % 97}", memory=f"Fact {i}: likes {i % 13}"))
                  for i in range(n)]
        for i in range(0, n, 2000):
            store.append(user_stream("bulk"), events[i:i + 2000])
        db = EventLogDb(store=store)
        try:
            index = db.indexer.index if db.indexer is not None else None
            assert isinstance(index, SqliteIndex)
            counted = [0]

            def step(counted: list[int] = counted) -> int:
                counted[0] += 1
                return 0

            index._conn.set_progress_handler(step, 10)
            found, total = db.get_user_memories(search_content=f"FACT {n // 2}:", limit=20, page=1,
                                                sort_by="updated_at", sort_order="desc", deserialize=False)
            index._conn.set_progress_handler(None, 0)
            assert total == 1 and [m["memory_id"] for m in found] == [f"m{n // 2}"]
            steps[n] = counted[0]
            short, short_total = db.get_user_memories(search_content=": l", limit=3, page=2, deserialize=False)
            assert short_total == n and [m["memory_id"] for m in short] == ["m3", "m4", "m5"]
            assert index_differences(store, index) == []
        finally:
            db.close()
    assert steps[20_000] < 5 * max(steps[2_000], 1) and steps[20_000] * 10 < 20_000 // 4, steps  # (in tens of steps)


@pytest.mark.parametrize("url", ["memory://", "file"])
def test_a_memory_that_changes_users_keeps_its_place_as_in_agnos_in_memory_db(url: str, tmp_path: Path) -> None:
    """InMemoryDb replaces a memory where it was first inserted, so a memory moved to another
    user is listed among that user's in its first place, not last: the in-process fold (a
    memory store) and the shared index (a file log) list it so too."""
    from agno.db.in_memory import InMemoryDb

    dbs = [InMemoryDb(), EventLogDb(url if url != "file" else str(tmp_path / "log"))]
    for db in dbs:
        for i, user in enumerate(["alice", "bob", "bob", "alice"]):
            db.upsert_user_memory(UserMemory(memory=f"m{i}", memory_id=f"m{i}", user_id=user))
        db.upsert_user_memory(UserMemory(memory="m0 moved", memory_id="m0", user_id="bob"))
        db.upsert_user_memory(UserMemory(memory="m5", memory_id="m5", user_id="bob"))
    lists = [[m["memory_id"] for m in db.get_user_memories(user_id="bob", deserialize=False)[0]]  # type: ignore[index]
             for db in dbs]
    assert lists[0] == ["m0", "m1", "m2", "m5"] and lists[1] == lists[0]
    dbs[1].close()  # type: ignore[attr-defined]


def test_a_topics_filter_and_a_users_page_read_their_memories_not_the_table(tmp_path: Path) -> None:
    """AgentOS's memory page filtered by a topic or an agent, and a user's page, over 3,000
    memories: the rows read are the topic's or agent's (or the page's), counted by a subclass
    of the real index."""

    from tests.test_read_index_tables import open_counting

    path = tmp_path / "log"
    store = open_store(str(path))
    events = [new_event(UserMemoryAdded(memory_id=f"m{i}", user_id=f"u{i % 100}", memory=f"fact {i}",
                                        topics=["rare"] if i % 300 == 7 else ["common"]),
                        actor=Actor(agent_id="rare-agent" if i % 300 == 7 else "common-agent"))
              for i in range(3000)]
    for i in range(0, len(events), 1000):
        store.append(user_stream("bulk"), events[i:i + 1000])
    store.close()
    db, index = open_counting(path)
    try:
        index.read = 0
        found, total = db.get_user_memories(topics=["rare"], limit=5, page=1, sort_by="updated_at", deserialize=False)
        assert total == 10 and [m["memory_id"] for m in found] == [f"m{i}" for i in range(7, 3000, 300)][:5]
        assert index.read <= 2 * 10 + 5
        index.read = 0
        found, total = db.get_user_memories(user_id="u7", limit=5, page=2, sort_by="created_at", deserialize=False)
        assert total == 30 and len(found) == 5 and index.read <= 2 * 5 + 5
        index.read = 0  # AgentOS's page of one agent's memories: a page of the agent's ordering
        found, total = db.get_user_memories(agent_id="rare-agent", limit=5, page=1, sort_by="updated_at",
                                            deserialize=False)
        rare = {f"m{i}" for i in range(7, 3000, 300)}
        assert total == 10 and len(found) == 5 and {m["memory_id"] for m in found} <= rare and index.read <= 2 * 5 + 5
        index.read = 0  # a user's memories of one agent: the smaller scope's (the agent's 10, not the user's 30)
        found, total = db.get_user_memories(user_id="u7", agent_id="rare-agent", deserialize=False)
        assert total == 10 and {m["memory_id"] for m in found} == rare and index.read <= 2 * 10 + 5
        found, total = db.get_user_memories(user_id="u8", agent_id="rare-agent", deserialize=False)
        assert total == 0 and found == []
        index.read = 0  # AgentOS's memory search box: the matches' keys, then the page's rows only
        found, total = db.get_user_memories(search_content="FACT 7", limit=5, page=2, sort_by="updated_at",
                                            sort_order="desc", deserialize=False)
        ref = EventLogDb(str(path), shared_index=False)  # (the in-process fold: Agno's sort of every memory)
        want, want_total = ref.get_user_memories(search_content="FACT 7", limit=5, page=2, sort_by="updated_at",
                                                 sort_order="desc", deserialize=False)
        ref.close()
        assert total == want_total == 111 and [m["memory_id"] for m in found] == [m["memory_id"] for m in want]
        assert len(found) == 5 and index.read <= total + 5
        index.read = 0  # a user's: that user's memories tested, not the table's
        found, total = db.get_user_memories(user_id="u7", search_content="act 10", deserialize=False)
        assert sorted(m["memory_id"] for m in found) == sorted(f"m{i}" for i in range(7, 3000, 100)
                                                                if "act 10" in f"fact {i}")
        assert index.read <= 30 + total
    finally:
        db.close()


WRITER = textwrap.dedent(
    """
    import sys
    from agno.session import AgentSession
    from adapters.agno import EventLogDb
    db = EventLogDb(sys.argv[1])
    for i in range(int(sys.argv[3])):
        db.upsert_session(AgentSession(session_id=f"{sys.argv[2]}-{i}", agent_id="w", user_id=sys.argv[2]))
        db.upsert_run({"run_id": f"{sys.argv[2]}-r{i}", "agent_id": "w", "status": "COMPLETED"},
                      session_id=f"{sys.argv[2]}-{i}")
        assert db.get_session(f"{sys.argv[2]}-{i}") is not None   # its own write, at once
    """
)


def _url(store: EventStore) -> str:
    return str(getattr(store, "path", "")) or store.url


def test_two_processes_write_and_read_one_index(indexed_store: Callable[[], EventStore]) -> None:
    """Two writers in their own processes, one reader here: every session is listed once, the
    reader sees others' writes within one read, and the index equals a fresh fold."""
    store = indexed_store()
    url = _url(store)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, who, "25"], env=env, stderr=subprocess.PIPE)
             for who in ("w1", "w2")]
    db = EventLogDb(store=store)
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read() if p.stderr else ""
    rows, total = db.get_sessions(deserialize=False, limit=100, page=1, sort_by="updated_at")
    assert total == 50 and len({r["session_id"] for r in rows}) == 50
    assert all(len(r["runs"]) == 1 for r in rows)
    assert db.get_run("w2-r7") is not None
    index = open_index(store)
    assert index is not None
    assert index_differences(store, index) == []
    index.close()
    db.close()


KILLED_INDEXER = textwrap.dedent(
    """
    import os, signal, sys
    from eventlog import open_store
    from projections.index import Indexer, open_index
    store = open_store(sys.argv[1])
    index = open_index(store)
    done = 0
    def step(n):
        global done
        done += n
        if done >= int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)   # mid-catch-up, between two index transactions
    Indexer(store, index, commit_every=7).catch_up(progress=step)
    """
)


def test_a_crash_between_appends_and_index_updates_is_caught_up_once(
        indexed_store: Callable[[], EventStore]) -> None:
    """Events appended by a process that died before it indexed them, and an indexer killed
    (SIGKILL) half way: the next reader folds exactly what is missing — nothing lost,
    nothing doubled."""
    store = indexed_store()
    ops = [(session_stream(f"s{i % 9}"), SessionStarted(session_id=f"s{i % 9}", user_id="u")) if i < 9 else
           (session_stream(f"s{i % 9}"), RunRecorded(session_id=f"s{i % 9}", run_id=f"r{i}", run={"i": i}))
           for i in range(120)]
    _append_all(store, ops)  # nobody indexed these
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, "-c", KILLED_INDEXER, _url(store), "40"], env=env, timeout=120,
                            check=False)
    assert killed.returncode == -9
    index = open_index(store)
    assert index is not None
    behind = index.cursors().get(0, 0)
    assert 0 < behind < 120  # it got part of the way, in whole transactions
    db = EventLogDb(store=store)
    session = db.get_session("s3", SessionType.AGENT, deserialize=False)
    assert [r["i"] for r in session["runs"]] == [o[1].run["i"] for o in ops[9:] if o[0] == "session/s3"]
    assert index_differences(store, index) == []
    assert index.cursors() == store.last_position().offsets
    index.close()
    db.close()


def test_a_schema_bump_rebuilds_the_index_and_never_serves_the_old_shape(
        indexed_store: Callable[[], EventStore], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    store = indexed_store()
    db = EventLogDb(store=store)
    db.upsert_session(_session(1, "alice"))
    db.close()
    index = open_index(store)
    assert index is not None
    index.set_meta("schema", "0")  # type: ignore[attr-defined]  # an index written by an older version of the code
    index.close()
    with caplog.at_level(logging.WARNING, logger="projections.index"):
        db = EventLogDb(store=store)
    assert "rebuilding it from the log" in caplog.text
    assert db.get_session("s001", SessionType.AGENT) is not None
    index = open_index(store)
    assert index is not None and index.meta()["schema"] == str(index_base.INDEX_SCHEMA)
    assert index_differences(store, index) == []
    index.close()
    db.close()


@pytest.mark.parametrize("damage", ["garbage", "missing", "truncated"])
def test_a_corrupt_or_missing_index_file_is_rebuilt_with_a_warning(
        tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    store = open_store(str(tmp_path / "log"))
    db = EventLogDb(store=store)
    for i in range(5):
        db.upsert_session(_session(i, "alice"))
    db.close()
    path = tmp_path / "log" / "readmodels.sqlite3"
    assert path.exists() and (path.stat().st_mode & 0o777) == 0o600
    if damage == "garbage":
        path.write_bytes(b"not a database at all" * 100)
    elif damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:200])
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with caplog.at_level(logging.WARNING, logger="projections.index"):
        db = EventLogDb(store=store)
        _, total = db.get_sessions(deserialize=False)
    assert total == 5
    if damage != "missing":
        assert "cannot be read" in caplog.text
        assert list((tmp_path / "log").glob("readmodels.sqlite3.corrupt-*"))  # kept aside, not deleted
    db.close()
    store.close()


def test_the_conversation_cache_stays_within_its_bound(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "log"))
    db = EventLogDb(store=store, cache_mb=1)
    for i in range(40):
        db.upsert_session(_session(i, "alice"))
        db.upsert_run({"run_id": f"r{i}", "agent_id": "planner", "content": "x" * 50_000}, session_id=f"s{i:03d}")
    for i in range(40):
        assert len(db.get_session(f"s{i:03d}", SessionType.AGENT).runs) == 1
    assert db._states.conversations.cached_bytes <= 1 << 20
    db.close()
    from eventlog import InvalidURL

    with pytest.raises(InvalidURL, match="cache_mb"):
        EventLogDb(f"{tmp_path / 'log'}?cache_mb=-3")
    opened = EventLogDb(f"file://{tmp_path / 'log'}?cache_mb=2")
    assert opened._states.conversations.max_bytes == 2 << 20
    opened.close()
    store.close()


def test_stores_without_a_shared_index_keep_their_read_models_in_the_process(tmp_path: Path) -> None:
    """Memory (ends with the process) and time-travel views fold in the process; an encrypted
    log has an index of its own, apart from the one of the same log read without its keys
    (tests/test_erasure_index.py covers what it holds and how `forget_user` purges it)."""
    assert open_index(open_store("memory://")) is None
    encrypted = open_store(str(tmp_path / "enc"), encrypt=True)
    index = open_index(encrypted)
    assert index is not None and index.where.endswith("readmodels-decrypted.sqlite3")
    index.close()
    db = EventLogDb(store=encrypted)
    db.upsert_session(_session(1, "alice"))
    assert db.indexer is not None and db.as_of(db.store.last_position()).indexer is None
    plain = open_index(open_store(str(tmp_path / "enc")))
    assert plain is not None and plain.where.endswith("readmodels.sqlite3")
    db.close()
    encrypted.close()


@pytest.mark.cluster
def test_cluster_partitions_keep_their_index_beside_them(cluster_url: str) -> None:
    """On Redis Cluster each partition's index is under its own hash tag; a page across
    partitions is merged in order, and the index equals a fresh fold."""
    store = open_store(cluster_url)
    db = EventLogDb(store=store)
    ref = EventLogDb(store=store, shared_index=False)
    for i in range(40):
        db.upsert_session(_session(i, ["alice", "bob"][i % 2]))
    index = db.indexer.index if db.indexer is not None else None
    assert isinstance(index, ReadIndex) and index.partitions > 1
    assert len({p for p, pos in index.cursors().items() if pos > 0}) > 1  # spread over partitions
    # (Insertion order is per partition, so sessions tied on the second may come in another
    # order than one process's fold: pages are compared by their sort key, and together.)
    for kwargs in ({"sort_by": "updated_at"}, {"user_id": "bob", "sort_by": "created_at"}):
        key = kwargs["sort_by"]
        seen: list[str] = []
        for page in (1, 2, 3, 4, 5):
            ours, total = db.get_sessions(deserialize=False, limit=10, page=page, **kwargs)
            theirs, ref_total = ref.get_sessions(deserialize=False, limit=10, page=page, **kwargs)
            assert [s[key] for s in ours] == [s[key] for s in theirs] and total == ref_total
            seen += [s["session_id"] for s in ours]
        assert sorted(seen) == sorted(s["session_id"] for s in ref.get_sessions(deserialize=False, **kwargs)[0])
    assert index_differences(store, index) == []
    db.close()
    ref.close()
    store.close()


def test_sqlite_index_files_are_private(tmp_path: Path) -> None:
    index = SqliteIndex(tmp_path / "sub" / "rm.sqlite3")
    assert (tmp_path / "sub").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "sub" / "rm.sqlite3").stat().st_mode & 0o777 == 0o600
    index.close()


def test_the_cli_rebuilds_the_index_and_finds_a_row_that_is_wrong(tmp_path: Path) -> None:
    """`eventlog reindex --check` compares with a fresh fold (exit 1 on a difference, naming
    it); `eventlog reindex` rebuilds, after which the check passes."""
    import json
    import sqlite3

    log = tmp_path / "log"
    db = EventLogDb(str(log))
    for i in range(3):
        db.upsert_session(_session(i, "alice"))
    db.close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-m", "adapters.cli", "--url", str(log)]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], capture_output=True, text=True, env=env, timeout=120, check=False)

    ok = run("reindex", "--check", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["differences"] == []
    conn = sqlite3.connect(log / "readmodels.sqlite3")
    conn.execute("DELETE FROM rows WHERE kind='session' AND key='s001'")  # a derived row gone wrong
    conn.commit()
    conn.close()
    bad = run("reindex", "--check", "--json")
    assert bad.returncode == 1
    assert any("s001" in d for d in json.loads(bad.stdout)["differences"])
    verified = run("verify", "--read-models", "--json")
    assert verified.returncode == 1 and json.loads(verified.stdout)["read_models"]["ok"] is False
    rebuilt = run("reindex", "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["events"] == 3
    assert run("reindex", "--check").returncode == 0
    assert run("verify", "--read-models").returncode == 0
    memory = run("--url", "memory://", "reindex")
    assert memory.returncode == 2 and "nothing to reindex" in memory.stderr


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=st.lists(st.dictionaries(st.sampled_from(["a", "b", "é"]), st.integers() | st.text(max_size=4),
                                     max_size=3), min_size=1, max_size=8),
       start=st.integers(1, 9))
def test_a_stream_read_for_a_fold_is_the_exact_read_with_runs_left_as_json(
        indexed_store: Callable[[], EventStore], runs: list[dict[str, Any]], start: int) -> None:
    """What the conversation cache reads: the same events in the same order, a run as the
    JSON of the dict the exact read gives; other payloads exactly equal."""
    import msgspec

    from eventlog.lazy_runs import LazyRunRecorded

    store = indexed_store()
    store.append("session/s", [new_event(SessionStarted(session_id="s"))])
    store.append("session/s", [new_event(RunRecorded(session_id="s", run_id=f"r{i}", run=r)) for i, r in enumerate(runs)])
    exact, lazy = list(store.read("session/s", start)), store.read_for_fold("session/s", start)
    assert [(e.id, e.version, e.position) for e in lazy] == [(e.id, e.version, e.position) for e in exact]
    for a, b in zip(lazy, exact):
        if type(a.payload) is LazyRunRecorded:
            assert msgspec.json.decode(bytes(a.payload.run)) == b.payload.run  # type: ignore[union-attr]
        else:  # (a LazyEvent: Event's fields in Event's order, so the same bytes)
            assert msgspec.json.encode(a) == msgspec.json.encode(b)


@pytest.mark.parametrize("kind", ["file", "redis", "cluster"])
def test_readers_never_see_a_half_built_index_while_another_process_reindexes(
        request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> None:
    """`eventlog reindex` in another process builds beside the live index and swaps it in
    (`ReadIndex.adopt`): a reader polling meanwhile always finds every session and every
    memory, and sessions written while the rebuild runs are in the index after it (nothing
    lost or doubled: the index equals a fresh fold)."""
    if kind == "file":
        url = str(tmp_path / "log")
    elif kind == "redis":
        url = f"{request.getfixturevalue('redis_url')}?prefix=swap"
    else:
        url = f"{request.getfixturevalue('cluster_url')}?prefix=swap"
    writer = EventLogDb(url)
    n = 400
    for i in range(n):
        writer.upsert_session(_session(i, f"u{i % 7}"))
        if i % 4 == 0:
            writer.upsert_user_memory(UserMemory(memory=f"fact {i}", memory_id=f"m{i}", user_id=f"u{i % 7}"))
    reader = EventLogDb(url)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    memories_of_u3 = len([i for i in range(0, n, 4) if i % 7 == 3])

    def reindex_while(work: Callable[[], None]) -> list[tuple[int, int, bool]]:
        proc = subprocess.Popen([sys.executable, "-m", "adapters.cli", "--url", url, "reindex", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        seen: list[tuple[int, int, bool]] = []
        while proc.poll() is None:
            work()
            total = reader.get_sessions(session_type=SessionType.AGENT, limit=20, page=1, deserialize=False)[1]
            memories = len(reader.get_user_memories(user_id="u3"))
            seen.append((total, memories, reader.get_session("s123", SessionType.AGENT) is not None))
        _, err = proc.communicate()
        assert proc.returncode == 0, err
        return seen

    # Readers only: nothing moves the log, so a reader trusts the index it has caught up with.
    seen = reindex_while(lambda: None)
    assert seen and all(s == (n, memories_of_u3, True) for s in seen), [s for s in seen if s != (n, memories_of_u3, True)][:5]
    # A writer meanwhile: what it writes during the rebuild is folded into the new index.
    extra = [0]

    def write() -> None:
        writer.upsert_session(_session(n + extra[0], "late"))
        extra[0] += 1

    seen = reindex_while(write)
    assert all(t >= n and m == memories_of_u3 and one for t, m, one in seen)
    fresh = EventLogDb(url)
    assert fresh.get_sessions(session_type=SessionType.AGENT, limit=1, page=1, deserialize=False)[1] == n + extra[0]
    assert index_differences(fresh.store, fresh.indexer.index) == []  # type: ignore[union-attr]
    for db in (writer, reader, fresh):
        db.close()


def test_an_earlier_schemas_index_is_reported_and_dropped_by_reindex(
        redis_url: str, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """A schema bump rebuilds the Redis index under new key names; the old index is left for
    the previous version's processes (a rolling upgrade), reported by every opening process
    and by `eventlog doctor`, and dropped by `eventlog reindex` -- its keys and its dead
    rebuilds', nothing of the current index or the log."""
    import json

    import redis

    from adapters.cli.app import main
    from projections.index.base import INDEX_SCHEMA

    url = f"{redis_url}?prefix=old"
    db = EventLogDb(url)
    db.upsert_session(_session(1, "alice"))
    db.close()
    client = redis.Redis.from_url(redis_url)
    tag = "old:{old:0}"
    planted = [f"{tag}:rm{INDEX_SCHEMA - 1}:cur", f"{tag}:rm{INDEX_SCHEMA - 1}:meta",
               f"{tag}:rm{INDEX_SCHEMA - 1}:o:s|agent|all|seq", f"{tag}:rm{INDEX_SCHEMA - 1}x4242:r:session"]
    for key in planted:
        client.set(key, "x")
    before = {k.decode() for k in client.scan_iter(match="old*")} - set(planted)
    with caplog.at_level(logging.WARNING, logger="projections.index"):
        db = EventLogDb(url)
    assert f"schema {INDEX_SCHEMA - 1}" in caplog.text and "eventlog reindex" in caplog.text
    db.close()
    capsys.readouterr()
    assert main(["--url", url, "doctor", "--json"]) == 1
    checks = {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["earlier read indexes"]["status"] == "warn"
    assert main(["--url", url, "reindex", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["dropped_keys"] == len(planted) and done["dropped_schemas"] == str(INDEX_SCHEMA - 1)
    left = {k.decode() for k in client.scan_iter(match="old*")}
    assert not left & set(planted) and before <= left  # (the log and the current index stay)
    main(["--url", url, "doctor", "--json"])
    checks = {c["check"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["earlier read indexes"]["status"] == "ok"
    db = EventLogDb(url)
    assert db.get_session("s001", session_type=SessionType.AGENT) is not None
    db.close()


def test_get_session_sees_what_others_appended_within_one_read(indexed_store: Callable[[], EventStore]) -> None:
    """A reader's `get_session` looks at the log's end with its row (one round trip on Redis):
    a session, a rename and a run that another writer appended to the log without folding
    them into the index (a writer killed before its index update) are in the very next read,
    as is a change another EventLogDb folded; a session it already read is not stale."""
    store = indexed_store()
    url = _url(store)
    reader = EventLogDb(store=store)
    writer_store = open_store(url)  # (a log writer with no index of its own: raw appends)
    try:
        assert reader.get_session("s1", SessionType.AGENT) is None
        _append_all(writer_store, [(session_stream("s1"), SessionStarted(session_id="s1", user_id="u1",
                                                                         session_type="agent", agent_id="a",
                                                                         created_at=1000))])
        got = reader.get_session("s1", SessionType.AGENT)
        assert got is not None and got.user_id == "u1" and not got.runs
        _append_all(writer_store, [(session_stream("s1"), SessionRenamed(session_id="s1", name="trip")),
                                   (session_stream("s1"), RunRecorded(session_id="s1", run_id="r1",
                                                                      run={"run_id": "r1", "agent_id": "a"}))])
        got = reader.get_session("s1", SessionType.AGENT)
        assert got is not None and (got.session_data or {}).get("session_name") == "trip"
        assert [r.run_id for r in got.runs or []] == ["r1"]
        other = EventLogDb(url)  # (another worker, folding its own write into the shared index)
        try:
            other.upsert_session(AgentSession(session_id="s2", agent_id="a", user_id="u2"))
            assert reader.get_session("s2", user_id="u2") is not None
            other.delete_session("s1")
            assert reader.get_session("s1") is None
        finally:
            other.close()
        index = open_index(store)
        assert index is not None and index_differences(store, index) == []
        index.close()
    finally:
        writer_store.close()
        reader.close()


def test_without_fts5_the_file_store_keeps_an_index_of_its_own_and_searches_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Some Pythons' SQLite lacks FTS5 (python-build-standalone's, uv's, in some releases).
    Such a process keeps no trigram index: it reads and writes an index file of its own
    (`readmodels-notext.sqlite3`, since it could not keep another process's trigram index
    current), searches by testing the text rows, and answers as a process with FTS5 does,
    while both write one log."""
    from projections.index import sqlite as sqlite_index

    url = str(tmp_path / "log")
    full = EventLogDb(url)
    monkeypatch.setattr(sqlite_index, "_FTS5", [False])
    bare = EventLogDb(url)
    monkeypatch.undo()
    try:
        assert isinstance(bare.indexer.index if bare.indexer is not None else None, SqliteIndex)
        assert isinstance(full.indexer.index if full.indexer is not None else None, SqliteIndex)
        assert not bare.indexer.index.texts and full.indexer.index.texts  # type: ignore[union-attr]
        assert bare.indexer.index.path.name == "readmodels-notext.sqlite3"  # type: ignore[union-attr]
        assert full.indexer.index.path.name == "readmodels.sqlite3"  # type: ignore[union-attr]
        for i in range(40):
            writer = full if i % 2 else bare
            writer.upsert_user_memory(UserMemory(memory=f"Fact {i} about {'tea' if i % 7 == 3 else 'coffee'}",
                                                 memory_id=f"m{i}", user_id=f"u{i % 4}"))
        bare.delete_user_memory("m10")
        full.upsert_user_memory(UserMemory(memory="Fact 3 now about water", memory_id="m3", user_id="u3"))
        for needle in ("TEA", "fact 1", "water", "about", "zz"):
            kwargs: dict[str, Any] = dict(search_content=needle, limit=5, page=1, sort_by="updated_at",
                                          sort_order="desc", deserialize=False)
            a, b = full.get_user_memories(**kwargs), bare.get_user_memories(**kwargs)
            assert [m["memory_id"] for m in a[0]] == [m["memory_id"] for m in b[0]] and a[1] == b[1], needle
        for db in (full, bare):
            assert db.indexer is not None and index_differences(db.store, db.indexer.index) == []
    finally:
        full.close()
        bare.close()
