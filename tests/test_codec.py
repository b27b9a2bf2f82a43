"""The codec's shortcuts agree with the plain path for any payload."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from eventlog import Actor, MessageAppended, codec, new_event

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(content=json_values, version=st.integers(1, 10**6), prev=st.sampled_from(["", "ab" * 32]),
       user=st.none() | st.text(max_size=8))
def test_seal_encoded_equals_encoding_the_sealed_event(content: object, version: int, prev: str,
                                                       user: str | None) -> None:
    event = new_event(MessageAppended(session_id="s", role="user", content=content), actor=Actor(user_id=user))
    sealed, body = codec.seal_encoded(event, stream="session/s", version=version, prev_hash=prev)
    assert sealed == codec.seal(event, stream="session/s", version=version, prev_hash=prev)
    assert body == codec.encode(sealed)
    assert codec.decode(body) == sealed
    assert codec.compute_hash(sealed) == sealed.hash


@settings(max_examples=200, deadline=None)
@given(content=json_values, position=st.integers(1, 10**12), stream_id=st.text(min_size=1, max_size=12),
       event_id=st.text(min_size=1, max_size=40))
def test_with_position_equals_encoding_the_positioned_event(content: object, position: int, stream_id: str,
                                                            event_id: str) -> None:
    import msgspec

    from eventlog.names import stream_for

    stream = stream_for("session", stream_id)
    event = msgspec.structs.replace(new_event(MessageAppended(session_id="s", role="user", content=content)),
                                    id=event_id)
    sealed, body = codec.seal_encoded(event, stream=stream, version=7, prev_hash="")
    assert codec.with_position(body, position) == codec.encode(msgspec.structs.replace(sealed, position=position))


event_ids = st.text(min_size=1, max_size=40)  # quotes, backslashes, control characters, any script
stream_names = st.one_of(
    st.text(min_size=1, max_size=12).map(lambda s: __import__("eventlog.names").names.stream_for("session", s)),
    st.sampled_from(['user/"quoted"', "session/ünï/cödé", "records/a:b@c", "x/y"]),
)


@settings(max_examples=300, deadline=None)
@given(content=json_values, event_id=event_ids, stream=stream_names, version=st.integers(1, 10**9),
       prev=st.sampled_from(["", "ab" * 32, 'odd"prev\\hash']), position=st.integers(1, 10**12),
       user=st.none() | st.text(max_size=8))
def test_the_spliced_hot_path_equals_replace_then_encode(content: object, event_id: str, stream: str, version: int,
                                                        prev: str, position: int, user: str | None) -> None:
    """The file and Redis stores splice stream, version, position, chain link and hash into the
    caller's encoded event instead of re-encoding it; the bytes must be exactly those of the plain
    path (the hash covers them), for any id, stream name and payload."""
    import msgspec

    event = msgspec.structs.replace(
        new_event(MessageAppended(session_id="s", role="user", content=content), actor=Actor(user_id=user)),
        id=event_id)
    reference = codec.seal(event, stream=stream, version=version, prev_hash=prev)
    sealed, body = codec.seal_encoded(event, stream=stream, version=version, prev_hash=prev)
    assert sealed == reference
    assert body == codec.encode(reference)
    (placed,), (line,) = codec.seal_run([event], stream=stream, version=version - 1, prev_hash=prev,
                                        position=position - 1)
    assert placed == msgspec.structs.replace(reference, position=position)
    assert line == codec.encode(placed)
    assert codec.decode(line) == placed
    assert codec.compute_hash(placed) == placed.hash


def test_events_placed_before_and_unknown_payloads_take_the_plain_path() -> None:
    """An event that already carries a stream/version/hash (a re-append from another log) or an
    unknown payload kept as raw bytes is sealed by replace-then-encode, with the same result."""
    import msgspec

    from eventlog.events import UnknownPayload

    fresh = new_event(MessageAppended(session_id="s", role="user", content="hi"))
    placed_before = codec.seal(fresh, stream="session/other", version=9, prev_hash="cd" * 32)
    unknown = msgspec.structs.replace(fresh, payload=UnknownPayload(kind="future.thing", raw=b'{"type":"future.thing","x":[1,2]}'))
    for event in (placed_before, unknown):
        reference = codec.seal(event, stream="session/s", version=3, prev_hash="ab" * 32)
        (placed,), (line,) = codec.seal_run([event], stream="session/s", version=2, prev_hash="ab" * 32,
                                            position=41)
        assert placed == msgspec.structs.replace(reference, position=42)
        assert line == codec.encode(placed)
        sealed, body = codec.seal_encoded(event, stream="session/s", version=3, prev_hash="ab" * 32)
        assert (sealed, body) == (reference, codec.encode(reference))


def test_the_hot_path_enforces_the_size_limit() -> None:
    import pytest

    from eventlog.errors import EventTooLarge

    event = new_event(MessageAppended(session_id="s", role="user", content="x" * 2000))
    with pytest.raises(EventTooLarge, match="limit is 1000"):
        codec.seal_run([event], stream="session/s", version=0, prev_hash="", position=0, max_bytes=1000)
    with pytest.raises(EventTooLarge):
        codec.seal_encoded(event, stream="session/s", version=1, prev_hash="", max_bytes=1000)


@settings(max_examples=150, deadline=None)
@given(contents=st.lists(json_values, min_size=1, max_size=6), event_ids=st.lists(event_ids, min_size=6, max_size=6,
                                                                                  unique=True),
       stream=stream_names, version=st.integers(0, 10**6), prev=st.sampled_from(["", "ab" * 32, 'odd"prev']),
       position=st.none() | st.integers(0, 10**9), placed_at=st.none() | st.integers(0, 5))
def test_sealing_a_run_equals_sealing_each_event(contents: list[object], event_ids: list[str], stream: str,
                                                 version: int, prev: str, position: int | None,
                                                 placed_at: int | None) -> None:
    """`seal_run` (the batch path) chains events exactly as sealing them one at a time does,
    with or without positions, also when one of them was placed in another log before."""
    import msgspec

    events = [msgspec.structs.replace(new_event(MessageAppended(session_id="s", role="user", content=c)), id=i)
              for c, i in zip(contents, event_ids)]
    if placed_at is not None and placed_at < len(events):
        events[placed_at] = codec.seal(events[placed_at], stream="session/elsewhere", version=4, prev_hash="ff")
    sealed, lines = codec.seal_run(events, stream=stream, version=version, prev_hash=prev, position=position)
    expected_prev, v = prev, version
    for k, (event, got, line) in enumerate(zip(events, sealed, lines)):
        v += 1
        want = codec.seal(event, stream=stream, version=v, prev_hash=expected_prev)  # replace, then encode
        if position is not None:
            want = msgspec.structs.replace(want, position=position + k + 1)
        assert got == want
        assert line == codec.encode(want)
        expected_prev = got.hash
