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
    InvalidEvent,
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
    (tmp_path / "log" / "index.msgpack").unlink()
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
    (path / "index.msgpack").unlink()
    again = JsonlStore(path)
    assert list(again.read("session/s1")) == before
    assert [e.id for e in again.read_all()][:2] == [e.id for e in before]
    again.close()


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


@settings(max_examples=100, deadline=None)
@given(password=st.text(alphabet=st.characters(min_codepoint=48, max_codepoint=122), min_size=4, max_size=30),
       user=st.sampled_from(["", "admin"]))
def test_redact_url_never_leaks_a_password(password: str, user: str) -> None:
    from urllib.parse import quote

    url = f"rediss://{user}:{quote(password, safe='')}@cache.example:6380/3"
    shown = redact_url(url)
    assert quote(password, safe="") not in shown or quote(password, safe="") in "cache.example:6380/3rediss"
    assert "***" in shown and shown.endswith("@cache.example:6380/3")


def test_store_files_private_and_errors_typed(tmp_path: Path) -> None:
    with pytest.raises(InvalidEvent):
        open_store(str(tmp_path / "x")).append("session/s1", [msg("y" * (2 << 20))])
