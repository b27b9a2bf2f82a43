"""A sort by an id column read from the value orderings (`projections.index.indexer.value_members`).

`get_sessions(sort_by="user_id" | "session_id" | "agent_id" | "team_id" | "workflow_id")`
over a type's sessions reads the page from an ordering of the values (ascending, and one
whose insertion numbers count down for a descending sort), and over a user's or an agent's
sessions walks that ordering until the page is full when that is cheaper than sorting the
scope's heads. Each must answer exactly as Agno's InMemoryDb does (same ids, order, total,
dicts), on files and on a real redis-server; the counting tests show that what is read is
the page; sessions whose value no ordering can hold fall back to sorting the heads; and on a
Redis log of several partitions (where InMemoryDb's global insertion order does not exist)
the value orderings give the same order as the head sort, page after page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agno.db.base import SessionType
from agno.db.in_memory import InMemoryDb
from agno.session import AgentSession, TeamSession

from adapters.agno import EventLogDb
from eventlog import open_store
from projections.index.check import index_differences
from tests.test_agno_parity import norm
from tests.test_session_queries import _count_rows_read


@pytest.fixture(params=["file", "redis"])
def db_pair(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    url = str(tmp_path / "log") if request.param == "file" else f"{request.getfixturevalue('redis_url')}?prefix=vo"
    store = open_store(url)
    db = EventLogDb(store=store)
    yield InMemoryDb(), db, store
    db.close()
    store.close()


def _fill(ref: Any, db: Any, n: int) -> None:
    for i in range(n):
        user = None if i % 11 == 0 else f"u{(i * 7) % 13:02d}"  # (ties, and some without a user)
        for target in (ref, db):
            if i % 5 == 4:
                target.upsert_session(TeamSession(session_id=f"t{i:04d}", team_id=f"team{i % 3}", user_id=user,
                                                  created_at=1000 + i // 10))
            else:
                target.upsert_session(AgentSession(session_id=f"s{(i * 31) % n:04d}-{i}", agent_id=f"a{i % 2}",
                                                   user_id=user, created_at=1000 + i // 10,
                                                   session_data={"session_state": {"big": "x" * 100}}))


@pytest.mark.parametrize("sort_by", ["user_id", "session_id", "agent_id", "team_id"])
def test_a_page_sorted_by_an_id_column_is_inmemorydbs_and_reads_only_the_page(db_pair: Any, sort_by: str) -> None:
    ref, db, _ = db_pair
    _fill(ref, db, 600)
    read = _count_rows_read(db.indexer.index)
    for kind in (SessionType.AGENT, SessionType.TEAM, None):
        for order in ("asc", "desc"):
            for page in (1, 7, 30):
                kwargs: dict[str, Any] = dict(session_type=kind, sort_by=sort_by, sort_order=order, limit=20,
                                              page=page, deserialize=False)
                want, want_total = ref.get_sessions(**kwargs)
                read.clear()
                got, total = db.get_sessions(**kwargs)
                assert [s["session_id"] for s in got] == [s["session_id"] for s in want], kwargs
                assert total == want_total and norm(got) == norm(want), kwargs
                if want and sort_by in want[0]:  # (else InMemoryDb keeps insertion order: another path)
                    assert sum(k for kind_, k in read if kind_ == "session") <= 21, (kwargs, read)
                    assert sum(k for kind_, k in read if kind_ == "shead") == 0, (kwargs, read)


def test_a_users_or_agents_page_walks_the_value_ordering_and_answers_as_inmemorydb(db_pair: Any) -> None:
    """A scope holding most of the type's sessions (an agent's half, a user of many) is read
    by walking all of the type's value ordering and keeping the scope's: heads read are about
    the page over the scope's share, not the scope."""
    ref, db, _ = db_pair
    for i in range(1_200):
        user = "big" if i % 4 else f"small{i % 3}"
        for target in (ref, db):
            target.upsert_session(AgentSession(session_id=f"s{(i * 37) % 1200:04d}", agent_id=f"a{i % 2}",
                                               user_id=user, created_at=5000 + i // 50))
    read = _count_rows_read(db.indexer.index)
    for filters in (dict(user_id="big"), dict(component_id="a1"), dict(user_id="small2"), dict(user_id="nobody")):
        for sort_by in ("session_id", "user_id", "agent_id"):
            for order in ("asc", "desc"):
                for page in (1, 4):
                    kwargs: dict[str, Any] = dict(session_type=SessionType.AGENT, sort_by=sort_by, sort_order=order,
                                                  limit=25, page=page, deserialize=False, **filters)
                    want, want_total = ref.get_sessions(**kwargs)
                    read.clear()
                    got, total = db.get_sessions(**kwargs)
                    assert [s["session_id"] for s in got] == [s["session_id"] for s in want], kwargs
                    assert total == want_total and norm(got) == norm(want), kwargs
                    heads = sum(k for kind_, k in read if kind_ == "shead")
                    assert heads <= 2 * want_total + 64, (kwargs, read)  # (a walk given up: then the head sort)
                    if sort_by == "session_id" and (filters.get("user_id") == "big" or "component_id" in filters):
                        # (page 4 of 25 = 100 of 600-900: a walk of ~150-250 heads, not 600-900)
                        assert heads <= 420, (kwargs, read)
                    assert sum(k for kind_, k in read if kind_ == "session") <= 26, (kwargs, read)


def test_values_no_ordering_can_hold_fall_back_to_the_head_sort(db_pair: Any) -> None:
    """A user id holding U+0001 (the value orderings' separator) cannot be ordered by key: the
    session is listed as odd, and while any is, the sort reads the heads — the same answer."""
    ref, db, store = db_pair
    users = ["b", "a\x01z", "a", "a\x02", None, "a\x01", "ab"]
    for i, user in enumerate(users * 3):
        for target in (ref, db):
            target.upsert_session(AgentSession(session_id=f"s{i:02d}", agent_id="x", user_id=user))
    for order in ("asc", "desc"):
        for page in (1, 2, 3):
            kwargs: dict[str, Any] = dict(session_type=SessionType.AGENT, sort_by="user_id", sort_order=order,
                                          limit=8, page=page, deserialize=False)
            want, _ = ref.get_sessions(**kwargs)
            got, _ = db.get_sessions(**kwargs)
            assert [s["session_id"] for s in got] == [s["session_id"] for s in want], kwargs
    assert index_differences(store, db.indexer.index) == []
    for target in (ref, db):  # the odd ones gone: the orderings answer again
        for i, user in enumerate(users * 3):
            if user is not None and "\x01" in user:
                target.delete_session(f"s{i:02d}")
    assert db.indexer.index.count("k:s|agent|all|x:user_id") == 0
    for order in ("asc", "desc"):
        kwargs = dict(session_type=SessionType.AGENT, sort_by="user_id", sort_order=order, limit=5, page=2,
                      deserialize=False)
        assert ([s["session_id"] for s in db.get_sessions(**kwargs)[0]]
                == [s["session_id"] for s in ref.get_sessions(**kwargs)[0]])


def test_renames_of_ids_and_deletes_move_sessions_in_the_value_orderings(db_pair: Any) -> None:
    """A session whose user or agent changes moves in the orderings (the index stays what a
    fresh fold gives), and a deleted one leaves them."""
    ref, db, store = db_pair
    for i in range(40):
        for target in (ref, db):
            target.upsert_session(AgentSession(session_id=f"s{i:02d}", agent_id=f"a{i % 3}", user_id=f"u{i % 4}"))
    for i in range(0, 40, 3):
        for target in (ref, db):
            target.upsert_session(AgentSession(session_id=f"s{i:02d}", agent_id=f"b{i % 5}", user_id=None))
    for i in range(0, 40, 7):
        for target in (ref, db):
            target.delete_session(f"s{i:02d}")
    assert index_differences(store, db.indexer.index) == []
    for sort_by in ("user_id", "agent_id", "session_id"):
        for order in ("asc", "desc"):
            kwargs: dict[str, Any] = dict(session_type=SessionType.AGENT, sort_by=sort_by, sort_order=order,
                                          limit=7, page=2, deserialize=False)
            want, want_total = ref.get_sessions(**kwargs)
            got, total = db.get_sessions(**kwargs)
            assert [s["session_id"] for s in got] == [s["session_id"] for s in want], kwargs
            assert total == want_total


def test_several_partitions_order_ties_as_the_head_sort_does(redis_url: str) -> None:
    """Insertion numbers are per partition, so ties on a value are told apart by (number,
    id), ascending for an ascending sort and descending for a descending one — by the value
    orderings and by the head sort alike (a time filter sends the query to the head sort);
    consecutive pages are disjoint and together the whole list."""
    store = open_store(f"{redis_url}?partitions=3&prefix=vp3")
    db = EventLogDb(store=store)
    try:
        for i in range(150):
            db.upsert_session(AgentSession(session_id=f"s{(i * 17) % 150:03d}", agent_id=f"a{i % 2}",
                                           user_id=None if i % 9 == 0 else f"u{i % 4}", created_at=100))
        for sort_by in ("user_id", "agent_id", "session_id"):
            for order in ("asc", "desc"):
                common: dict[str, Any] = dict(session_type=SessionType.AGENT, sort_by=sort_by, sort_order=order,
                                              deserialize=False)
                pages = [[s["session_id"] for s in db.get_sessions(limit=16, page=p, **common)[0]]
                         for p in range(1, 11)]
                heads = [[s["session_id"] for s in db.get_sessions(limit=16, page=p, start_timestamp=0, **common)[0]]
                         for p in range(1, 11)]
                assert pages == heads, (sort_by, order)
                flat = [sid for p in pages for sid in p]
                assert sorted(flat) == sorted(f"s{i:03d}" for i in range(150)), (sort_by, order)
    finally:
        db.close()
        store.close()
