"""The Redis store beyond the conformance suite: atomicity, stale heads, partitions, auth,
foreign entries, a server that goes away. Real redis-server; fakeredis only for a fast check."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import redis

from eventlog import ConcurrencyError, CorruptLog, MessageAppended, StoreUnavailable, new_event, open_store
from eventlog.redis_store import RedisStreamStore
from tests.redis_server import RedisServer


def msg(text: str, session: str = "s1"):  # type: ignore[no-untyped-def]
    return new_event(MessageAppended(session_id=session, role="user", content=text))


def test_conflicting_batch_writes_nothing(redis_url: str) -> None:
    store = open_store(redis_url)
    store.append("session/s1", [msg("a")])
    with pytest.raises(ConcurrencyError):
        store.append("session/s1", [msg("b"), msg("c")], expected_version=0)
    client = redis.Redis.from_url(redis_url)
    assert client.xlen("el:{el:0}:log") == 1
    assert client.llen("el:{el:0}:s:session/s1") == 1
    assert store.head("session/s1").version == 1


def test_two_writers_with_stale_heads_keep_one_chain(redis_url: str) -> None:
    a, b = open_store(redis_url), open_store(redis_url)
    for i in range(20):
        (a if i % 3 else b).append("session/shared", [msg(str(i))])
    chain = list(a.read("session/shared"))
    assert [e.version for e in chain] == list(range(1, 21))
    assert all(y.prev_hash == x.hash for x, y in zip(chain, chain[1:]))
    assert a.verify().ok


def test_partitions_merge_and_resume(redis_url: str) -> None:
    store = open_store(f"{redis_url}?partitions=4&prefix=p4")
    assert isinstance(store, RedisStreamStore) and store.partitions == 4
    ids = [store.append(f"session/s{i % 7}", [msg(str(i), f"s{i % 7}")])[0] for i in range(40)]
    assert {store.partition_of(f"session/s{i}") for i in range(7)} != {0}
    everything = list(store.read_all())
    assert sorted(e.id for e in everything) == sorted(e.id for e in ids)
    assert everything == list(store.read_all())  # deterministic merge
    from eventlog import Cursor

    cursor = Cursor()
    for e in everything[:15]:
        cursor = cursor.advanced(e)
    rest = list(store.read_all(after=str(cursor)))
    assert [e.id for e in rest] == [e.id for e in everything[15:]]
    assert store.verify().ok
    with pytest.raises(Exception, match="partitions"):
        open_store(f"{redis_url}?partitions=2&prefix=p4")


def test_auth_and_password_never_in_errors(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "auth", extra=["--requirepass", "s3cr3t-pw"]).start()
    try:
        ok = open_store(f"redis://:s3cr3t-pw@127.0.0.1:{server.port}/2")
        ok.append("session/s1", [msg("x")])
        assert "s3cr3t-pw" not in ok.url and "***" in ok.url
        assert len(list(ok.read("session/s1"))) == 1
        assert redis.Redis(port=server.port, password="s3cr3t-pw", db=2).exists("el:config")
        bad = open_store(f"redis://:wrong-pw@127.0.0.1:{server.port}/0")  # opening defers the check
        with pytest.raises(StoreUnavailable) as info:
            bad.append("session/s1", [msg("y")])
        assert "wrong-pw" not in str(info.value) and "credentials" in str(info.value)
    finally:
        server.kill()


def test_rediss_url_configures_tls() -> None:
    client = redis.Redis.from_url("rediss://:pw@127.0.0.1:1/0?ssl_ca_certs=/tmp/ca.pem")
    kwargs = client.connection_pool.connection_kwargs
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    assert kwargs["ssl_ca_certs"] == "/tmp/ca.pem"
    remote = open_store("rediss://:pw-secret@127.0.0.1:1/0?ssl_ca_certs=/tmp/ca.pem")
    assert remote.client.connection_pool.connection_class.__name__ == "SSLConnection"  # type: ignore[attr-defined]
    with pytest.raises(StoreUnavailable) as info:  # nothing listens on port 1
        list(remote.read_all())
    assert "pw-secret" not in str(info.value)


def test_foreign_garbage_entries_are_skipped_and_reported(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    store = open_store(redis_url)
    kept = store.append("session/s1", [msg("good")])
    client = redis.Redis.from_url(redis_url)
    client.incr("el:{el:0}:seq")
    client.xadd("el:{el:0}:log", {"x": "no e field"}, id="0-2")
    client.incr("el:{el:0}:seq")
    client.xadd("el:{el:0}:log", {"e": b"\xff not json"}, id="0-3")
    later = store.append("session/s2", [msg("after", "s2")])
    assert [e.id for e in store.read_all()] == [kept[0].id, later[0].id]
    assert "skipping unreadable entry" in caplog.text
    assert list(store.read("session/s1")) == kept
    report = store.verify()
    assert not report.ok and report.first_break is not None and report.first_break.kind == "removed"
    client.rpush("el:{el:0}:s:session/s1", 3)
    with pytest.raises(CorruptLog):
        list(store.read("session/s1"))


def test_server_gone_raises_store_unavailable(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "gone").start()
    store = open_store(server.url)
    store.append("session/s1", [msg("x")])
    server.kill()
    with pytest.raises(StoreUnavailable):
        store.append("session/s1", [msg("y")])
    with pytest.raises(StoreUnavailable):
        list(store.read_all())


def test_blobs_live_beside_the_log(redis_url: str) -> None:
    store = open_store(redis_url)
    store.put_blob("snapshot/sessions", b"\x00\x01")
    assert open_store(redis_url).get_blob("snapshot/sessions") == b"\x00\x01"


def test_info_reports_persistence(redis_url: str) -> None:
    store = open_store(redis_url)
    info = store.info()  # type: ignore[attr-defined]
    assert info["redis_version"] and info["aof_enabled"] is False and "maxmemory_policy" in info


def test_fakeredis_quick_unit_round_trip() -> None:
    fakeredis = pytest.importorskip("fakeredis")
    store = RedisStreamStore(fakeredis.FakeRedis(), url="redis://fake")
    recorded = store.append("session/s1", [msg("a"), msg("b")])
    assert list(store.read("session/s1")) == recorded
    assert store.append("session/s1", recorded) == recorded
    assert msgspec.json.decode(msgspec.json.encode(recorded[0].payload))["content"] == "a"


def test_script_flush_reloads_the_append_script(redis_url: str) -> None:
    """NOSCRIPT (a restarted server, SCRIPT FLUSH) reloads the script and appends once."""
    store = open_store(redis_url)
    store.append("session/s1", [msg("a")])
    client = redis.Redis.from_url(redis_url)
    client.script_flush()
    recorded = store.append("session/s1", [msg("b"), msg("c")])
    assert [e.version for e in recorded] == [2, 3]
    assert client.xlen("el:{el:0}:log") == 3
    assert store.verify().ok


def test_duplicate_ids_inside_and_across_batches_are_stored_once(redis_url: str) -> None:
    store = open_store(redis_url)
    a, b, c = msg("a"), msg("b"), msg("c")
    first = store.append("session/s1", [a, a, b])  # a repeated inside one batch
    assert [e.id for e in first] == [a.id, b.id]
    mixed = store.append("session/s1", [b, c, a])  # b and a stored before, c new
    assert mixed[0] == first[1] and mixed[2] == first[0]  # the stored twins, positions and all
    assert mixed[1].id == c.id and mixed[1].version == 3 and mixed[1].prev_hash == first[1].hash
    assert store.append("session/s1", [a, b, c]) == [first[0], first[1], mixed[1]]  # a whole retry
    client = redis.Redis.from_url(redis_url)
    assert client.xlen("el:{el:0}:log") == 3 and client.llen("el:{el:0}:s:session/s1") == 3
    assert list(store.read("session/s1")) == [first[0], first[1], mixed[1]]
    assert store.verify().ok


def test_retry_after_unknown_outcome_stores_nothing_twice(redis_url: str) -> None:
    """A second store (no cached head, as after a crash) resends a batch that was stored."""
    batch = [msg(str(i)) for i in range(50)]
    recorded = open_store(redis_url).append("session/s1", batch)
    again = open_store(redis_url).append("session/s1", batch)
    assert again == recorded
    assert redis.Redis.from_url(redis_url).xlen("el:{el:0}:log") == 50


def test_stale_cached_head_is_resealed(redis_url: str) -> None:
    a, b = open_store(redis_url), open_store(redis_url)
    b.append("session/s1", [msg("from b")])  # b caches head v1
    a.append("session/s1", [msg("from a 1"), msg("from a 2")])  # moves it to v3 behind b's back
    recorded = b.append("session/s1", [msg("from b again"), msg("and more")])  # STALE, reseal, retry
    assert [e.version for e in recorded] == [4, 5]
    chain = list(a.read("session/s1"))
    assert [e.version for e in chain] == [1, 2, 3, 4, 5] and chain[3:] == recorded
    assert all(y.prev_hash == x.hash for x, y in zip(chain, chain[1:]))
    with pytest.raises(ConcurrencyError):  # a's cache is stale too, and the check is the server's
        a.append("session/s1", [msg("late")], expected_version=3)


def test_duplicate_whose_entry_is_gone_is_corrupt(redis_url: str) -> None:
    store = open_store(redis_url)
    event = msg("a")
    store.append("session/s1", [event])
    redis.Redis.from_url(redis_url).xdel("el:{el:0}:log", "0-1")
    with pytest.raises(CorruptLog, match="missing"):
        store.append("session/s1", [event])


def test_partitioned_appends_use_one_slot_keys(redis_url: str) -> None:
    """Every key of one append carries the partition's hash tag (one slot in a cluster)."""
    store = open_store(f"{redis_url}?partitions=8&prefix=pk")
    assert isinstance(store, RedisStreamStore)
    for i in range(20):
        store.append(f"session/s{i}", [msg(str(i), f"s{i}")])
    for i in range(20):
        p, keys = store._route(f"session/s{i}")[:2]
        assert p == store.partition_of(f"session/s{i}")
        assert all(f"{{pk:{p}}}" in key for key in keys)
        assert [e.version for e in store.read(f"session/s{i}")] == [1]


def test_read_all_pages_with_foreign_entries_keep_every_event_at_its_position(redis_url: str) -> None:
    """`read_all` decodes a page of entries in one call when every entry is ours; a page with a
    foreign entry (another field, garbage, two events glued by a newline) is read entry by
    entry, so each event still comes back exactly once at its own position."""
    import redis as redis_lib

    from eventlog import codec

    client = redis_lib.Redis.from_url(redis_url)
    store = open_store(redis_url)
    first = store.append("session/s1", [msg(f"a{i}") for i in range(150)])
    glued = codec.encode(first[0]) + b"\n" + codec.encode(first[1])
    for fields in ({b"x": b"other"}, {b"e": b"{not json"}, {b"e": glued}):
        seq = client.incr("el:{el:0}:seq")
        client.xadd("el:{el:0}:log", fields, id=f"0-{seq}")
    second = store.append("session/s2", [msg(f"b{i}") for i in range(1200)])  # more than one page
    got = list(store.read_all())
    assert got == first + second
    assert [e.position for e in got] == [*range(1, 151), *range(154, 1354)]
    assert list(store.read_all(after=100)) == first[100:] + second
    store.close()


def test_a_glued_entry_and_a_garbage_entry_in_one_page_do_not_shift_positions(redis_url: str) -> None:
    """Two events glued by a newline in one entry (+1 line) and a garbage entry (-1 line) in the
    same run of a page would leave the line count unchanged: such a page must not be decoded as
    one run of lines, or every later event of the run would get its neighbour's position."""
    import redis as redis_lib

    from eventlog import codec

    client = redis_lib.Redis.from_url(redis_url)
    store = open_store(redis_url)
    first = store.append("session/s1", [msg(f"a{i}") for i in range(120)])
    glued = codec.encode(first[0]) + b"\n" + codec.encode(first[1])
    for data in (glued, b"{not json"):
        seq = client.incr("el:{el:0}:seq")
        client.xadd("el:{el:0}:log", {b"e": data}, id=f"0-{seq}")
    second = store.append("session/s2", [msg(f"b{i}") for i in range(30)])
    got = list(store.read_all())
    assert got == first + second
    assert [e.position for e in got] == [*range(1, 121), *range(123, 153)]
    store.close()
