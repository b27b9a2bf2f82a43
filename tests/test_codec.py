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
