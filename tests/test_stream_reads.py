"""One stream's events read out of a log where other streams' events sit in between.

The file store reads a stream a window at a time and hands a window that holds nothing but
the stream's lines to the decoder whole; the Redis store reads the entries of a stream with
one XRANGE per span of nearby seqs and picks the stream's entries out of each span. Both
shortcuts depend on how the streams interleave (none, a few, many others' events between;
events larger than a window), so these tests interleave streams at random and compare every
read of every stream, from every version, with the events as appended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlog import EventStore, RunRecorded, SessionStarted, new_event
from eventlog.lazy_runs import LazyRunRecorded

# (stream number, size of the run's text): which stream gets the next event, and how big it is
_appends = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from([0, 10, 200, 40_000, 300_000])),
    min_size=1, max_size=40,
)


def _comparable(event: Any) -> tuple[Any, ...]:
    payload = event.payload
    if type(payload) is LazyRunRecorded:
        run = msgspec.json.decode(bytes(payload.run))
        return (event.id, event.stream, event.version, event.position, event.partition, payload.run_id, run)
    if isinstance(payload, RunRecorded):
        return (event.id, event.stream, event.version, event.position, event.partition, payload.run_id, payload.run)
    return (event.id, event.stream, event.version, event.position, event.partition, msgspec.json.encode(payload))


@pytest.mark.parametrize("store_factory", ["file", "redis", "cluster", "memory", "fallback"], indirect=True)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(appends=_appends, batch=st.integers(1, 5))
def test_every_read_of_every_stream_is_the_events_appended_to_it_whatever_lies_between(
        store_factory: Callable[[], EventStore], appends: list[tuple[int, int]], batch: int) -> None:
    store = store_factory()
    streams = [f"session/s{n}" for n in range(4)]
    written: dict[str, list[Any]] = {s: [] for s in streams}
    for s, sid in zip(streams, ("s0", "s1", "s2", "s3")):
        written[s] += store.append(s, [new_event(SessionStarted(session_id=sid))])
    pending: dict[int, list[Any]] = {}
    for i, (n, size) in enumerate(appends):
        run = {"run_id": f"r{i}", "content": "x" * size, "n": i}
        pending.setdefault(n, []).append(new_event(RunRecorded(session_id=f"s{n}", run_id=f"r{i}", run=run)))
        if len(pending[n]) >= batch:
            written[streams[n]] += store.append(streams[n], pending.pop(n))
    for n, events in pending.items():
        written[streams[n]] += store.append(streams[n], events)
    for s in streams:
        exact = list(store.read(s))
        assert [_comparable(e) for e in exact] == [_comparable(e) for e in written[s]]
        for start in sorted({1, 2, len(exact) // 2 + 1, len(exact)}):
            folded = store.read_for_fold(s, start)
            assert [_comparable(e) for e in folded] == [_comparable(e) for e in exact[start - 1:]]
            assert [_comparable(e) for e in store.read(s, start)] == [_comparable(e) for e in exact[start - 1:]]


@pytest.mark.parametrize("store_factory", ["file", "redis", "cluster"], indirect=True)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gaps=st.lists(st.integers(0, 12), min_size=65, max_size=160))
def test_a_long_stream_with_others_between_reads_back_whole(
        store_factory: Callable[[], EventStore], gaps: list[int]) -> None:
    """More events than one short read carries (Redis: read by XRANGE of spans, some spans
    broken by other streams' events, some not): every read from every version is exact."""
    store = store_factory()
    written = store.append("session/long", [new_event(SessionStarted(session_id="long"))])
    for i, gap in enumerate(gaps):
        if gap:
            store.append("session/other", [new_event(RunRecorded(session_id="other", run_id=f"o{i}-{k}",
                                                                 run={"k": k})) for k in range(gap)])
        written += store.append("session/long", [new_event(RunRecorded(session_id="long", run_id=f"r{i}",
                                                                       run={"i": i, "pad": "p" * (i % 7)}))])
    for start in (1, 2, 40, len(written) - 64, len(written) - 63, len(written)):
        want = [_comparable(e) for e in written[start - 1:]]
        assert [_comparable(e) for e in store.read("session/long", start)] == want
        assert [_comparable(e) for e in store.read_for_fold("session/long", start)] == want


@pytest.mark.parametrize("victims", [[5], [1], [12], [4, 5, 6], [2, 9], [70], [1, 99]])
def test_a_redis_entry_gone_from_the_middle_of_a_span_is_reported_never_skipped(
        redis_url: str, victims: list[int]) -> None:
    """Entries read by span must still all be there: one deleted under the store (XDEL,
    eviction) makes the read raise LogLost naming its version, on the exact and the fold read
    (short streams, read inside the script, and long ones, read by span)."""
    import redis

    from eventlog import LogLost, open_store

    store = open_store(f"{redis_url}?prefix=gone")
    length = 11 if max(victims) <= 12 else 120
    written = store.append("session/s", [new_event(SessionStarted(session_id="s"))])
    written += store.append("session/s", [new_event(RunRecorded(session_id="s", run_id=f"r{i}", run={"i": i}))
                                          for i in range(length)])
    store.append("session/other", [new_event(SessionStarted(session_id="other"))])
    client = redis.Redis.from_url(redis_url)
    for v in victims:
        client.xdel("gone:{gone:0}:log", f"0-{written[v - 1].position}")
    for read in (lambda: list(store.read("session/s")), lambda: store.read_for_fold("session/s")):
        with pytest.raises(LogLost) as lost:
            read()
        assert f"versions {victims[0]}" in str(lost.value) or f", {victims[0]}" in str(lost.value)
    store.close()
