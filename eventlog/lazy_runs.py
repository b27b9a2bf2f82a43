"""The log as a rebuild reads it: a run's body left as the JSON it is stored as.

Most of a log is `run.recorded` events, and the read model that keeps runs stores each run
as its JSON anyway (see `projections.conversation.RunEntry`). Decoding the run into a tree
of dicts only to encode it back was a third of the cost of a rebuild. Here the run comes
back as `msgspec.Raw`: the stored bytes of that one JSON value, not parsed.

`LazyEvent` has `Event`'s fields in `Event`'s order (so it would encode to the same bytes)
with a payload union in which `RunRecorded` is replaced by `LazyRunRecorded`; every event of
a lazily decoded batch is one (`isinstance(e, Event)` is False for them). Stores hand these
out only to a caller that asks (`EventStore.read_batches_for_fold(lazy_runs=True)`), and the
projection runner asks only when every projection it serves promises it can take them
(`Projection.takes_lazy_runs`: `lazy_runs = True` on the class that defines `apply`).

For such a projection: the `Raw` is a view into the decoder's whole input (a 64 KiB read),
so keep `bytes(p.run)`, never the `Raw` itself (it would hold the buffer alive and would be
spliced verbatim into a msgpack snapshot). The bytes are the run as stored; for a line this
codec wrote they equal `msgspec.json.encode(run)`, for a line from elsewhere they decode to
the same dict.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Union, get_args

import msgspec

from eventlog.events import NO_ACTOR, TYPE_OF, Actor, AnyPayload, RunRecorded, payload_type, utcnow
from eventlog.ids import new_id


class LazyRunRecorded(RunRecorded, frozen=True, tag="run.recorded"):
    """`RunRecorded` whose `run` is the stored JSON object, undecoded (`bytes(run)` gives
    it; it always starts with `{`: anything else is decoded the normal way and kept)."""

    run: msgspec.Raw = msgspec.Raw(b"{}")  # type: ignore[assignment]


TYPE_OF[LazyRunRecorded] = "run.recorded"

if TYPE_CHECKING:  # to a type checker, the payload is any payload (LazyRunRecorded is a RunRecorded)
    LazyPayload = AnyPayload
else:
    LazyPayload = Union[tuple(LazyRunRecorded if t is RunRecorded else t for t in get_args(AnyPayload))]  # noqa: UP007


class LazyEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """`Event` as a rebuild reads it (same fields, same order; see the module docstring)."""

    id: str = msgspec.field(default_factory=new_id)
    stream: str = ""
    version: int = 0
    position: int = 0
    partition: int = 0
    at: datetime = msgspec.field(default_factory=utcnow)
    actor: Actor = NO_ACTOR
    causation_id: str | None = None
    correlation_id: str | None = None
    schema: int = 1
    payload: LazyPayload
    prev_hash: str = ""
    hash: str = ""

    @property
    def type(self) -> str:
        return payload_type(self.payload)
