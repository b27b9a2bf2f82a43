"""Bad input through `EventLogDb` and the store (issue 17, case 7): `session_id=None`, a dict
key JSON cannot hold, a cyclic dict — in session state, metadata or a run. Each raises a
clear `ValueError`-family error (`InvalidEvent`) naming the field, before anything is
written; the log and the read models are as they were, and the next good write works."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from agno.session import AgentSession
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from adapters.agno import EventLogDb
from eventlog import InvalidEvent, InvalidStreamName, MessageAppended, SessionStateChanged, new_event, open_store
from eventlog.json_check import find_unstorable


def _cyclic() -> dict[str, Any]:
    value: dict[str, Any] = {"a": 1}
    value["loop"] = {"back": value}
    return value


def _state(db: EventLogDb) -> tuple[list[str], list[Any]]:
    """What a caller can see: the log's event ids and the session rows."""
    ids = [e.id for e in db.store.read_all()]
    rows = db.get_sessions(deserialize=False)
    return ids, rows


def _run(run_id: str, **extra: Any) -> dict[str, Any]:
    return {"run_id": run_id, "agent_id": "a", "session_id": "s1", "status": "COMPLETED", "content": "hi",
            "created_at": 1, **extra}


@pytest.fixture(params=["memory", "file"])
def db(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    url = "memory://" if request.param == "memory" else str(tmp_path / "log")
    database = EventLogDb(url)
    database.upsert_session(AgentSession(session_id="s1", agent_id="a", session_data={"session_state": {"k": 1}}))
    database.upsert_run(_run("r1"), "s1")
    yield database
    database.close()


BAD_WRITES = {
    "session_id None": (lambda db: db.upsert_session(AgentSession(session_id=None, agent_id="a")),  # type: ignore[arg-type]
                        InvalidStreamName, "session_id"),
    "tuple key in state (new session)": (
        lambda db: db.upsert_session(AgentSession(session_id="s2", agent_id="a",
                                                  session_data={"session_state": {(1, 2): "x"}})),
        InvalidEvent, r"\(1, 2\)"),
    "tuple key in state (existing session)": (
        lambda db: db.upsert_session(AgentSession(session_id="s1", agent_id="a",
                                                  session_data={"session_state": {"k": {("a",): 1}}})),
        InvalidEvent, r"payload\.set\.k has a key"),
    "tuple key in metadata": (
        lambda db: db.upsert_session(AgentSession(session_id="s1", agent_id="a", metadata={"m": {(1,): 2}},
                                                  session_data={"session_state": {"k": 1}})),
        InvalidEvent, "key JSON cannot hold"),
    "cyclic state": (
        lambda db: db.upsert_session(AgentSession(session_id="s1", agent_id="a",
                                                  session_data={"session_state": _cyclic()})),
        InvalidEvent, r"session\.session_data\.session_state\.loop\.back contains itself"),
    "cyclic metadata": (
        lambda db: db.upsert_session(AgentSession(session_id="s3", agent_id="a", metadata=_cyclic())),
        InvalidEvent, r"session\.metadata\.loop\.back contains itself"),
    "cyclic run dict": (lambda db: db.upsert_run(_run("r2", metadata=_cyclic()), "s1"),
                        InvalidEvent, r"payload\.run\.metadata\.loop\.back contains itself"),
    "tuple key in a run dict": (lambda db: db.upsert_run(_run("r2", metadata={(1, 2): 3}), "s1"),
                                InvalidEvent, r"payload\.run\.metadata has a key"),
    "a bad run in a new session's runs": (
        lambda db: db.upsert_session(AgentSession(session_id="s4", agent_id="a",
                                                  runs=[_run("r3"), _run("r4", metadata=_cyclic())])),  # type: ignore[list-item]
        InvalidEvent, r"session\.runs\[1\]\.metadata\.loop\.back contains itself"),
}


@pytest.mark.parametrize("case", list(BAD_WRITES))
def test_bad_input_through_eventlogdb_is_refused_before_anything_is_written(db: EventLogDb, case: str) -> None:
    write, error, names = BAD_WRITES[case]
    before = _state(db)
    with pytest.raises(error, match=names) as raised:
        write(db)
    assert isinstance(raised.value, ValueError)
    assert _state(db) == before
    assert db.store.verify().ok
    good = db.upsert_session(AgentSession(session_id="s1", agent_id="a", session_data={"session_state": {"k": 2}}))
    assert good.session_data["session_state"] == {"k": 2}
    assert len(list(db.store.read_all())) == len(before[0]) + 1


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_the_store_names_the_field_of_a_cyclic_or_badly_keyed_payload(kind: str, tmp_path: Path) -> None:
    store = open_store("memory://" if kind == "memory" else str(tmp_path / "log"))
    kept = store.append("session/s1", [new_event(MessageAppended(session_id="s1", role="user", content="ok"))])
    cases = [
        (SessionStateChanged(session_id="s1", set={"user": {"prefs": [1, {None: 2}]}}),
         r"payload\.set\.user\.prefs\[1\] has a key JSON cannot hold: None"),
        (SessionStateChanged(session_id="s1", set=_cyclic()), r"payload\.set\.loop\.back contains itself"),
    ]
    for payload, expected in cases:
        for batch in ([new_event(payload)],
                      [new_event(MessageAppended(session_id="s1", role="user", content="x")), new_event(payload)]):
            with pytest.raises(InvalidEvent, match=expected):
                store.append("session/s1", batch)
    assert list(store.read_all()) == kept and store.verify().ok
    store.close()


def test_too_deep_a_nesting_is_refused_by_name() -> None:
    deep: Any = "leaf"
    for _ in range(2000):
        deep = {"d": deep}
    store = open_store("memory://")
    with pytest.raises(InvalidEvent, match="nested deeper than"):
        store.append("session/s1", [new_event(SessionStateChanged(session_id="s1", set={"x": deep}))])
    assert list(store.read_all()) == []


_KEY = st.text(max_size=4) | st.integers() | st.floats(allow_nan=False)
_VALUE = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                      lambda c: st.lists(c, max_size=3) | st.dictionaries(_KEY, c, max_size=3), max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(value=_VALUE, bad=st.sampled_from([(1, 2), None, True, frozenset({1})]), where=st.integers(0, 50))
def test_find_unstorable_accepts_what_msgspec_encodes_and_finds_a_bad_key_anywhere(
        value: Any, bad: Any, where: int) -> None:
    assert find_unstorable(value) is None
    msgspec.json.encode(value)
    dicts: list[dict[Any, Any]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            dicts.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    if not dicts:
        return
    target = dicts[where % len(dicts)]
    assume(bad not in target)  # (True == 1 == 1.0: it would only replace a value)
    target[bad] = 1
    problem = find_unstorable(value)
    assert problem is not None and "key JSON cannot hold" in problem and repr(bad) in problem
    with pytest.raises(TypeError):
        msgspec.json.encode(value)
