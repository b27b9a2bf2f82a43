"""One conformance suite for every EventStore backend (memory, file, Redis, fallback).

Written once; the `store` fixture in conftest.py runs each test against each backend.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlog import (
    Actor,
    ConcurrencyError,
    EventStore,
    EventTooLarge,
    InvalidEvent,
    InvalidStreamName,
    MessageAppended,
    RunRecorded,
    SessionStateChanged,
    UnknownPayload,
    UserMemoryAdded,
    codec,
    new_event,
)


def msg(session: str = "s1", text: str = "hi", **kw: object) -> object:
    return new_event(MessageAppended(session_id=session, role="user", content=text), **kw)  # type: ignore[arg-type]


def test_round_trip_assigns_versions_positions_and_hashes(store: EventStore) -> None:
    actor = Actor(agent_id="planner", user_id="u1", session_id="s1", run_id="r1")
    recorded = store.append("session/s1", [msg(text="a", actor=actor), msg(text="b", actor=actor)])
    assert [e.version for e in recorded] == [1, 2]
    assert recorded[0].position < recorded[1].position
    assert recorded[1].prev_hash == recorded[0].hash != ""
    assert list(store.read("session/s1")) == recorded
    assert [e.payload.content for e in store.read("session/s1")] == ["a", "b"]  # type: ignore[union-attr]
    assert store.read("session/s1").__next__().actor == actor
    assert store.head("session/s1") == (2, recorded[1].hash)


def test_read_version_range(store: EventStore) -> None:
    store.append("session/s1", [msg(text=str(i)) for i in range(10)])
    got = [e.payload.content for e in store.read("session/s1", from_version=3, to_version=5)]  # type: ignore[union-attr]
    assert got == ["2", "3", "4"]
    assert list(store.read("session/none")) == []
    assert store.head("session/none") == (0, "")


def test_expected_version_conflict_writes_nothing(store: EventStore) -> None:
    store.append("session/s1", [msg()], expected_version=0)
    with pytest.raises(ConcurrencyError) as info:
        store.append("session/s1", [msg(), msg()], expected_version=0)
    assert info.value.actual == 1
    assert len(list(store.read("session/s1"))) == 1
    store.append("session/s1", [msg()], expected_version=1)
    assert store.head("session/s1").version == 2


def test_append_is_idempotent_by_event_id(store: EventStore) -> None:
    batch = [msg(text="x"), msg(text="y")]
    first = store.append("session/s1", batch)
    again = store.append("session/s1", batch)
    assert again == first
    # a retry that lands after another write still succeeds and stores nothing new
    store.append("session/s1", [msg(text="z")])
    assert store.append("session/s1", batch, expected_version=0) == first
    assert [e.payload.content for e in store.read("session/s1")] == ["x", "y", "z"]  # type: ignore[union-attr]
    # a mixed batch stores only the new event
    fresh = msg(text="w")
    mixed = store.append("session/s1", [batch[0], fresh])
    assert mixed[0] == first[0] and mixed[1].version == 4
    assert len(list(store.read_all())) == 4


def test_unknown_event_types_are_kept_intact(store: EventStore) -> None:
    future = new_event(UnknownPayload(kind="agent.dreamed", raw=b'{"type":"agent.dreamed","dream":[1,2,{"a":null}]}'))
    recorded = store.append("session/s1", [future])
    back = next(store.read("session/s1"))
    assert isinstance(back.payload, UnknownPayload)
    assert back.type == "agent.dreamed"
    assert msgspec.json.decode(back.payload.raw) == {"type": "agent.dreamed", "dream": [1, 2, {"a": None}]}
    assert back == recorded[0]
    assert codec.compute_hash(back) == back.hash


def test_read_all_streams_in_append_order_and_resumes(store: EventStore) -> None:
    for i in range(30):
        store.append(f"session/s{i % 3}", [msg(session=f"s{i % 3}", text=str(i))])
    events = list(store.read_all())
    assert [e.payload.content for e in events] == [str(i) for i in range(30)]  # type: ignore[union-attr]
    after = events[9]
    rest = list(store.read_all(after=after.position if store.partitions == 1 else None))
    if store.partitions == 1:
        assert [e.id for e in rest] == [e.id for e in events[10:]]
        until = list(store.read_all(until=events[4].position))
        assert [e.id for e in until] == [e.id for e in events[:5]]
    cut = events[14].at
    assert all(e.at <= cut for e in store.read_all(until=cut))
    assert len(list(store.read_all(until=cut - timedelta(days=1)))) == 0


def test_streams_listing_with_prefix(store: EventStore) -> None:
    store.append("session/b", [msg("b")])
    store.append("session/a", [msg("a")])
    store.append("user/u1", [new_event(UserMemoryAdded(memory_id="m1", user_id="u1", memory="likes tea"))])
    assert store.streams() == ["session/a", "session/b", "user/u1"]
    assert store.streams("session/") == ["session/a", "session/b"]


def test_tail_catches_up_then_follows(store: EventStore) -> None:
    store.append("session/s1", [msg(text="old")])
    stop = threading.Event()
    seen: list[str] = []

    def consume() -> None:
        for event in store.tail(stop=stop, prefix="session/"):
            seen.append(event.payload.content)  # type: ignore[union-attr]
            if len(seen) == 3:
                stop.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    time.sleep(0.2)
    store.append("user/u1", [new_event(UserMemoryAdded(memory_id="m1", user_id="u1", memory="x"))])
    store.append("session/s1", [msg(text="new1")])
    store.append("session/s2", [msg("s2", text="new2")])
    thread.join(timeout=10)
    stop.set()
    assert seen == ["old", "new1", "new2"]


def test_tail_timeout_ends_when_idle(store: EventStore) -> None:
    store.append("session/s1", [msg()])
    started = time.monotonic()
    assert len(list(store.tail(timeout=0.3))) == 1
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "name",
    ["", "x" * 300, "session/a\nb", "session/\x00", "../etc/passwd", "session/../x", "/abs", "a//b", "a/{tag}", "a b"],
)
def test_bad_stream_names_rejected_and_nothing_harmed(store: EventStore, name: str) -> None:
    kept = store.append("session/ok", [msg()])
    with pytest.raises(InvalidStreamName):
        store.append(name, [msg()])
    assert list(store.read("session/ok")) == kept
    assert list(store.read_all()) == kept


def test_oversized_event_rejected_and_nothing_harmed(store: EventStore) -> None:
    kept = store.append("session/ok", [msg()])
    big = msg(text="x" * (store.max_event_bytes + 10))
    with pytest.raises(EventTooLarge):
        store.append("session/ok", [msg(text="fine"), big])
    assert list(store.read_all()) == kept


def test_non_json_payload_values_rejected(store: EventStore) -> None:
    kept = store.append("session/ok", [msg()])
    bad = new_event(SessionStateChanged(session_id="s", set={"f": object()}))
    with pytest.raises(InvalidEvent):
        store.append("session/ok", [bad])
    with pytest.raises(InvalidEvent):
        store.append("session/ok", ["not an event"])  # type: ignore[list-item]
    assert list(store.read_all()) == kept
    assert store.head("session/ok").version == 1


def test_concurrent_threads_append_without_loss(store: EventStore) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                store.append(f"session/t{n % 2}", [msg(f"t{n % 2}", text=f"{n}-{i}")])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for stream in ("session/t0", "session/t1"):
        versions = [e.version for e in store.read(stream)]
        assert versions == list(range(1, 51))
    assert len({e.id for e in store.read_all()}) == 100


def test_run_payload_round_trip_keeps_nested_json(store: EventStore) -> None:
    run = {"run_id": "r1", "messages": [{"role": "user", "content": "héllo ✓"}], "metrics": {"t": 1.5}, "n": None}
    recorded = store.append("session/s1", [new_event(RunRecorded(session_id="s1", run_id="r1", run=run))])
    back = next(store.read("session/s1"))
    assert back == recorded[0]
    assert back.payload.run == run  # type: ignore[union-attr]


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.tuples(st.sampled_from(["session/a", "session/b", "user/c"]), st.lists(texts, min_size=1, max_size=4)), min_size=1, max_size=8))
def test_any_interleaving_reads_back_as_appended(store_factory: object, plan: list[tuple[str, list[str]]]) -> None:
    store: EventStore = store_factory()  # type: ignore[operator]
    try:
        expected: dict[str, list[str]] = {}
        order: list[str] = []
        batches = []
        for stream, contents in plan:
            batch = [msg(text=c) for c in contents]
            batches.append((stream, batch))
            store.append(stream, batch)
            expected.setdefault(stream, []).extend(contents)
            order.extend(e.id for e in batch)
        for stream, contents in expected.items():
            assert [e.payload.content for e in store.read(stream)] == contents  # type: ignore[union-attr]
        assert [e.id for e in store.read_all()] == order
        before = list(store.read_all())
        for stream, batch in batches:  # appending the same batches again changes nothing
            store.append(stream, batch)
        assert list(store.read_all()) == before
    finally:
        store.close()
