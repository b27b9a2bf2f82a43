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
