"""The bad-input catalogue: every public entry point fed malformed input. Each gives a clear
typed error (or a clear skip-and-report), the process survives, and every event stored before
is still readable and still verifies. Plus the security basics."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlog import (
    CorruptLog,
    Event,
    EventLogError,
    EventStore,
    InvalidURL,
    MessageAppended,
    StoreUnavailable,
    codec,
    new_event,
    open_store,
    redact_url,
)
from eventlog.jsonl import JsonlStore

REPO = Path(__file__).resolve().parents[1]


def msg(text: str = "hello"):  # type: ignore[no-untyped-def]
    return new_event(MessageAppended(session_id="s1", role="user", content=text))


def intact(store: EventStore, before: list[Event]) -> None:
    assert [e.id for e in store.read_all()][: len(before)] == [e.id for e in before]
    assert store.verify().ok


@pytest.mark.parametrize(
    "bad",
    [
        lambda s: s.append("session/s1", [object()]),
        lambda s: s.append("session/s1", ["text"]),
        lambda s: s.append("session/s1", [msgspec.structs.replace(msg(), id="")]),
        lambda s: s.append("session/s1", [msgspec.structs.replace(msg(), id="x" * 500)]),
        lambda s: s.append("session/s1", [msgspec.structs.replace(msg(), stream="session/other")]),
        lambda s: s.append("session/s1", [msg("x" * (2 << 20))]),
        lambda s: s.append("session/s1", [new_event(MessageAppended(session_id="s", role="u", content={1j}))]),
        lambda s: s.append("session/s1", [msg()], expected_version=-1),
        lambda s: s.append("session/s1", [msg()], expected_version=True),
        lambda s: s.append("", [msg()]),
        lambda s: s.append("a/../b", [msg()]),
        lambda s: s.append(None, [msg()]),
        lambda s: s.read_all(after="not-a-position"),
        lambda s: s.read_all(after=-3),
    ],
)
def test_append_and_read_reject_bad_input_cleanly(store: EventStore, bad) -> None:  # type: ignore[no-untyped-def]
    before = store.append("session/s1", [msg(), msg()])
    with pytest.raises((EventLogError, ValueError)):
        result = bad(store)
        if hasattr(result, "__next__"):
            list(result)
    intact(store, before)
    assert store.append("session/s1", [msg("still works")])[0].version == 3


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("", InvalidURL),
        ("   ", InvalidURL),
        ("ftp://host/x", InvalidURL),
        ("file://otherhost/x", InvalidURL),
        ("/tmp/x\x00y", InvalidURL),
        ("/tmp/x?fsync=sometimes", EventLogError),
        ("/tmp/x?bogus=1", InvalidURL),
        ("redis://127.0.0.1:6379/0?partitions=zero", InvalidURL),
        ("redis://127.0.0.1:6379/0?prefix=a{b}", InvalidURL),
    ],
)
def test_open_store_bad_urls(url: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        open_store(url)


def test_closed_port_is_store_unavailable_without_password() -> None:
    store = open_store("redis://:topsecret@127.0.0.1:1/0")
    with pytest.raises(StoreUnavailable) as info:
        store.append("session/s1", [msg()])
    assert "topsecret" not in str(info.value)


@pytest.mark.parametrize(
    "garbage",
    [b"not json at all\n", b'{"id": "x", "truncated": \n', b'{"valid": "json", "wrong": "shape"}\n',
     b"\x00\xff\xfe binary \x01\n", b"\n", b"[1, 2, 3]\n"],
)
def test_hand_edited_jsonl_lines(tmp_path: Path, garbage: bytes) -> None:
    store = JsonlStore(tmp_path / "log")
    before = store.append("session/s1", [msg("a"), msg("b")])
    store.close()
    seg = tmp_path / "log" / "00000001.jsonl"
    seg.write_bytes(seg.read_bytes() + garbage)
    [saved.unlink() for saved in (tmp_path / "log").glob("streams.sqlite3*")]
    again = JsonlStore(tmp_path / "log")
    assert list(again.read("session/s1")) == before
    if garbage.strip():
        assert len(again.corrupt) == 1
        report = again.verify()
        assert not report.ok and report.first_break is not None and report.first_break.kind == "unreadable"
    after = again.append("session/s1", [msg("c")])[0]
    assert after.version == 3 and after.prev_hash == before[-1].hash
    assert [e.id for e in again.read("session/s1")] == [*[e.id for e in before], after.id]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.lists(st.binary(min_size=1, max_size=60).filter(lambda b: b"\n" not in b), min_size=1, max_size=4))
def test_hypothesis_garbage_lines_never_harm_stored_events(tmp_path_factory: pytest.TempPathFactory,
                                                            garbage: list[bytes]) -> None:
    path = tmp_path_factory.mktemp("garbage")
    store = JsonlStore(path, fsync="never")
    before = store.append("session/s1", [msg("a"), msg("b")])
    store.close()
    seg = path / "00000001.jsonl"
    seg.write_bytes(seg.read_bytes() + b"\n".join(garbage) + b"\n")
    [saved.unlink() for saved in (path).glob("streams.sqlite3*")]
    again = JsonlStore(path)
    assert list(again.read("session/s1")) == before
    assert [e.id for e in again.read_all()] == [e.id for e in before]
    # the report names exactly the garbage: the first non-blank junk line, at its byte offset
    offset, first_junk = len(seg.read_bytes()) - sum(len(g) + 1 for g in garbage), None
    for g in garbage:
        if g.strip():
            first_junk = offset
            break
        offset += len(g) + 1
    report = again.verify()
    if first_junk is None:
        assert report.ok and again.corrupt == []
    else:
        assert not report.ok and report.first_break is not None and report.first_break.kind == "unreadable"
        assert report.first_break.detail.startswith(f"segment 1 byte {first_junk}:")
        assert [c[1] for c in again.corrupt] == [off for off, g in _offsets(first_junk, garbage) if g.strip()]
        assert report.events == 0  # nothing is vouched for while the log has unreadable lines
    after = again.append("session/s1", [msg("c")])[0]
    assert after.version == 3 and after.prev_hash == before[-1].hash
    again.close()


def _offsets(start: int, garbage: list[bytes]) -> list[tuple[int, bytes]]:
    out, offset, started = [], start, False
    for g in garbage:
        if g.strip() or started:
            started = True
            out.append((offset, g))
            offset += len(g) + 1
    return out


@settings(max_examples=200, deadline=None)
@given(data=st.one_of(st.binary(max_size=200),
                      st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                                   lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                                   max_leaves=10).map(lambda v: msgspec.json.encode(v))))
def test_codec_decode_only_ever_raises_corrupt_log(data: bytes) -> None:
    try:
        event = codec.decode(data)
    except CorruptLog:
        return
    assert isinstance(event, Event)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                     max_leaves=6)
_EVENT_KEYS = ["id", "stream", "version", "position", "partition", "at", "actor", "causation_id", "schema",
               "payload", "prev_hash", "hash"]
_PAYLOAD_KEYS = ["type", "session_id", "role", "content", "memory_id", "user_id", "memory", "topics", "run",
                 "set", "removed", "heads", "up_to"]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_codec_decode_of_mutated_events_only_ever_raises_corrupt_log(data: st.DataObject) -> None:
    """Near-misses are where decoders break: a real event with fields dropped, retyped or
    replaced, and payloads of every known type with wrong field types."""
    from eventlog.events import PAYLOAD_TYPES

    body = codec.to_builtins(new_event(MessageAppended(session_id="s1", role="user", content="hi")))
    body.update(stream="session/s1", version=1, position=1, hash="ab" * 32)
    body["payload"]["type"] = data.draw(st.sampled_from([*PAYLOAD_TYPES, "", "nope", 7]))
    for _ in range(data.draw(st.integers(1, 4))):
        where = body if data.draw(st.booleans()) else body["payload"]
        key = data.draw(st.sampled_from(_EVENT_KEYS if where is body else _PAYLOAD_KEYS))
        if data.draw(st.booleans()) and key in where:
            del where[key]
        else:
            where[key] = data.draw(_JSON)
        if not isinstance(body.get("payload"), dict):
            break
    try:
        event = codec.decode(msgspec.json.encode(body))
    except CorruptLog:
        return
    assert isinstance(event, Event)
    codec.encode(event)  # whatever was accepted can be written back


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.dictionaries(st.sampled_from([b"e", b"x", b"payload"]), st.binary(max_size=40), min_size=1, max_size=2))
def test_hypothesis_foreign_redis_entries(redis_url: str, fields: dict[bytes, bytes]) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    store = open_store(redis_url)
    before = store.append("session/s1", [msg("a")])
    seq = client.incr("el:{el:0}:seq")
    client.xadd("el:{el:0}:log", fields, id=f"0-{seq}")
    events = list(store.read_all())  # skip-and-report, never crash
    assert events[0] == before[0]
    assert list(store.read("session/s1")) == before
    after = store.append("session/s1", [msg("b")])[0]
    assert after.version == 2 and after.prev_hash == before[0].hash
    store.close()


# --- CLI arguments ------------------------------------------------------------------------------
# Add a row here for every new subcommand or option that takes user input (times, positions,
# session ids, paths). `sync` without a fallback, `export --out` into a missing directory and a
# malformed `verify --expect-root` are covered in tests/test_cli.py.


@pytest.mark.parametrize(
    "args",
    [["state", "--session", "s1", "--at", "2026-13-45T99:99"], ["audit", "--since", "tomorrow"],
     ["replay", "--session", "../../etc/passwd"], ["diff", "--session", "s1", "1", "zz"],
     ["fork", "--session", "nope", "--at", "1"], ["import", "/nonexistent/file.jsonl"]],
)
def test_cli_bad_arguments_exit_2_without_traceback(tmp_path: Path, args: list[str]) -> None:
    url = str(tmp_path / "log")
    store = open_store(url)
    store.append("session/s1", [msg()])
    store.close()
    done = subprocess.run([sys.executable, "-m", "adapters.cli", "--url", url, *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO, check=False)
    assert done.returncode == 2, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert open_store(url).verify().ok


# --- security basics ------------------------------------------------------------------------------


def test_no_pickle_eval_or_yaml_load_in_the_source() -> None:
    pattern = re.compile(r"\bimport pickle\b|\bpickle\.loads?\(|(?<![.\w])eval\(|(?<![.\w])exec\(|yaml\.load\(")
    offenders = [f"{p}:{n}" for folder in ("eventlog", "projections", "adapters")
                 for p in (REPO / folder).rglob("*.py")
                 for n, line in enumerate(p.read_text().splitlines(), start=1) if pattern.search(line)]
    assert offenders == []


@settings(max_examples=300, deadline=None)
@given(password=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=6, max_size=30),
       user=st.sampled_from(["", "admin"]), encode=st.booleans(), in_message=st.booleans())
def test_redact_url_never_leaks_a_password(password: str, user: str, encode: bool, in_message: bool) -> None:
    """Any password, percent-encoded or pasted raw (with `/`, `?`, `#`, `@` in it), alone or
    quoted inside an error message."""
    from urllib.parse import quote

    from hypothesis import assume

    written = quote(password, safe="") if encode else password
    url = f"rediss://{user}:{written}@cache.example:6380/3"
    text = f"Error 111 connecting to {url}. Connection refused." if in_message else url
    shown = redact_url(text)
    assume(written not in f"Error 111 connecting to rediss://{user}:***@cache.example:6380/3. Connection refused.")
    assert written not in shown and "***" in shown
    if encode:  # a well-formed URL keeps everything but the password
        assert f"rediss://{user}:***@cache.example:6380/3" in shown


def test_every_file_private_even_with_umask_0_keys_and_blobs_included(tmp_path: Path) -> None:
    """Extends tests/test_jsonl_store.py: recursively, with encryption on (keys under the log
    directory), blobs, a forgotten user, and a process umask that would allow everything."""
    import os
    import stat

    from eventlog import Actor, UserMemoryAdded

    old_umask = os.umask(0)
    try:
        store = open_store(str(tmp_path / "log"), encrypt=True)
        store.append("user/ann", [new_event(UserMemoryAdded(memory_id="m1", user_id="ann", memory="x"),
                                            actor=Actor(user_id="ann"))])
        store.append("user/bob", [new_event(UserMemoryAdded(memory_id="m2", user_id="bob", memory="y"),
                                            actor=Actor(user_id="bob"))])
        store.inner.put_blob("projections/memories", b"snapshot")  # type: ignore[attr-defined]
        store.forget_user("ann")  # type: ignore[attr-defined]
        store.close()
    finally:
        os.umask(old_umask)
    paths = [tmp_path / "log", *(tmp_path / "log").rglob("*")]
    assert {p.name for p in paths} >= {"keys", "blobs", "streams.sqlite3", "00000001.jsonl", "LOCK"}
    assert len([p for p in paths if p.suffix == ".key"]) == 1  # bob's; ann's is gone
    for p in paths:
        expected = 0o700 if p.is_dir() else 0o600
        assert stat.S_IMODE(p.stat().st_mode) == expected, p
