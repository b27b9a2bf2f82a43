"""`EncryptedStore`: crypto-shredding as one stage of the pipeline, around any store.

Fields that hold personal data are encrypted with the key of the user the event is about
(`actor.user_id`, else the payload's `user_id`) before the inner store seals and hashes them,
and decrypted on the way out. `forget_user` destroys the key and appends `user.forgotten`;
from then on those fields read as "[erased]" on every read, rebuild and time-travel query,
while `verify()` — which reads the stored ciphertext — still passes.

Encrypted fields: memory text (memory, old_memory, input), message content, the personal parts
of Agno run dicts (`RUN_KEYS`: content, messages, input, reasoning, tools, events, media, member
responses, session state, ...), session state values, session summaries, workflow state values
and step outputs, plus any `extra_fields` the caller names. Stream names, ids, actors and times
stay in clear (they are what audit and ordering need); see docs/security.md. The user is
`actor.user_id`, else the payload's `user_id`; an event with neither is stored in clear.

A ciphertext does not fit a field typed `str` (a memory's `input`), so the codec reads such
an event back as `UnknownPayload`; decryption therefore also works on the raw JSON of known
payload types and converts the result back to the typed payload.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import msgspec

from eventlog.crypto import ENC, ERASED, KeyStore, decrypt_value, encrypt_value, is_encrypted
from eventlog.events import (
    PAYLOAD_TYPES,
    Actor,
    Event,
    MessageAppended,
    RecordUpserted,
    RunRecorded,
    SessionStateChanged,
    SessionSummaryChanged,
    UnknownPayload,
    UserForgotten,
    UserMemoryAdded,
    UserMemoryUpdated,
    WorkflowStateSaved,
    WorkflowStepCompleted,
    new_event,
)
from eventlog.integrity import VerifyReport
from eventlog.names import user_stream
from eventlog.store import Cursor, EventStore, StreamHead

FIELDS: dict[type, tuple[str, ...]] = {
    UserMemoryAdded: ("memory", "input"),
    UserMemoryUpdated: ("memory", "old_memory", "input"),
    MessageAppended: ("content",),
    SessionSummaryChanged: ("summary",),
    WorkflowStepCompleted: ("output",),
}
VALUE_MAPS: dict[type, str] = {SessionStateChanged: "set", WorkflowStateSaved: "state"}
# Generic records (`record.upserted`) of tables that hold what a user said or is: these
# columns of the row are encrypted with the key of the event's user (the row's owner).
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "learnings": ("content", "metadata"),
    "compactions": ("summary", "archived_messages"),
    "tool_results": ("preview",),
    "transcripts": ("entry",),
}
# Keys of Agno's run dicts (agent, team and workflow runs) that carry what was said or done.
RUN_KEYS = (
    "content", "messages", "input", "additional_input", "reasoning_content", "reasoning_steps",
    "reasoning_messages", "tools", "events", "citations", "references", "images", "videos", "audio",
    "files", "response_audio", "session_state", "member_responses", "step_results",
    "step_executor_runs",
)

Transform = Callable[[Any, str], Any]


class EncryptedStore(EventStore):
    """Wraps `inner`; see the module docstring."""

    def __init__(self, inner: EventStore, keys: KeyStore,
                 extra_fields: Mapping[type, tuple[str, ...]] | None = None) -> None:
        self.inner = inner
        self.keys = keys
        self.url = inner.url
        self.partitions = inner.partitions
        self.max_event_bytes = inner.max_event_bytes
        self._erasure_hooks: list[weakref.WeakMethod[Callable[[str], None]]] = []
        self.fields = {**FIELDS}
        for cls, names in (extra_fields or {}).items():
            self.fields[cls] = tuple(dict.fromkeys((*self.fields.get(cls, ()), *names)))

    # --- the transform --------------------------------------------------------------------

    @staticmethod
    def user_of(event: Event) -> str | None:
        return event.actor.user_id or getattr(event.payload, "user_id", None)

    def _changes(self, cls: type, get: Callable[[str], Any], fn: Transform) -> dict[str, Any]:
        """New values for the personal fields of a payload of type `cls` (read with `get`)."""
        changes: dict[str, Any] = {}
        for name in self.fields.get(cls, ()):
            value = get(name)
            if value is not None:
                changes[name] = fn(value, name)
        mapped = VALUE_MAPS.get(cls)
        if mapped is not None:
            values = get(mapped)
            if isinstance(values, dict) and values:
                changes[mapped] = {k: fn(v, f"{mapped}.{k}") for k, v in values.items()}
        if cls is RecordUpserted:
            table, record = get("table"), get("record")
            names = RECORD_FIELDS.get(table, ()) if isinstance(table, str) else ()
            if isinstance(record, dict) and any(record.get(n) is not None for n in names):
                record = dict(record)
                for name in names:
                    if record.get(name) is not None:
                        record[name] = fn(record[name], f"record.{name}")
                changes["record"] = record
        if cls is RunRecorded:
            run = get("run")
            if isinstance(run, dict):
                run = dict(run)
                for key in RUN_KEYS:
                    if run.get(key) is not None:
                        run[key] = fn(run[key], f"run.{key}")
                changes["run"] = run
        return changes

    def _transform(self, event: Event, fn: Transform) -> Event:
        p: Any = event.payload
        if isinstance(p, UnknownPayload):
            return self._transform_raw(event, p, fn)
        changes = self._changes(type(p), lambda name: getattr(p, name, None), fn)
        if not changes:
            return event
        return msgspec.structs.replace(event, payload=msgspec.structs.replace(p, **changes))

    def _transform_raw(self, event: Event, p: UnknownPayload, fn: Transform) -> Event:
        """A known payload type kept raw because a ciphertext did not fit a typed field."""
        cls = PAYLOAD_TYPES.get(p.kind)
        if cls is None or cls is UnknownPayload:
            return event  # truly unknown: nothing we know how to decrypt
        try:
            body = msgspec.json.decode(p.raw)
        except msgspec.DecodeError:
            return event
        if not isinstance(body, dict):
            return event
        changes = self._changes(cls, body.get, fn)
        if not changes:
            return event
        try:
            payload = msgspec.convert({**body, **changes}, cls)
        except msgspec.ValidationError:
            return event  # still does not fit: leave it as stored
        return msgspec.structs.replace(event, payload=payload)

    def encrypt(self, event: Event) -> Event:
        user = self.user_of(event)
        if user is None:
            return event
        key = self.keys.get_or_create(user)
        return self._transform(event, lambda v, path: encrypt_value(key, v, f"{event.id}/{path}".encode()))

    def decrypt(self, event: Event, cache: dict[str, bytes | None] | None = None) -> Event:
        user = self.user_of(event)
        if user is None:
            return event
        keys = cache if cache is not None else {}
        if user not in keys:
            keys[user] = self.keys.get(user)
        key = keys[user]
        return self._transform(
            event, lambda v, path: decrypt_value(key, v, f"{event.id}/{path}".encode()) if is_encrypted(v) else v
        )

    # --- the port -------------------------------------------------------------------------

    def _append(self, stream: str, events: list[Event], expected_version: int | None) -> list[Event]:
        recorded = self.inner.append(stream, [self.encrypt(e) for e in events], expected_version)
        cache: dict[str, bytes | None] = {}
        return [self.decrypt(e, cache) for e in recorded]

    def _read(self, stream: str, from_version: int, to_version: int | None) -> Iterator[Event]:
        cache: dict[str, bytes | None] = {}
        return (self.decrypt(e, cache) for e in self.inner.read(stream, from_version, to_version))

    def _read_all(self, after: Cursor, *, upcast: bool) -> Iterator[Event]:
        cache: dict[str, bytes | None] = {}
        for event in self.inner._read_all(after, upcast=upcast):
            yield self.decrypt(event, cache)

    def read_all_raw(self, after: Cursor | int | str | None = None) -> Iterator[Event]:
        """Stored bytes as they are (ciphertext): what the hash chain covers."""
        return self.inner.read_all_raw(after)

    def _streams(self) -> Iterable[str]:
        return self.inner.streams()

    def _head(self, stream: str) -> StreamHead:
        return self.inner.head(stream)

    def last_position(self) -> Cursor:
        return self.inner.last_position()

    def put_blob(self, name: str, data: bytes) -> None:
        """Snapshots would hold decrypted data past an erasure, so none are kept."""

    def get_blob(self, name: str) -> bytes | None:
        return None

    def verify(self, *, resume: bool = False, expect_root: str | None = None,
               progress: Callable[[int], None] | None = None) -> VerifyReport:
        """The inner store's log as stored (the hashes cover the ciphertext)."""
        return self.inner.verify(resume=resume, expect_root=expect_root, progress=progress)

    @property
    def corrupt(self) -> Any:
        return getattr(self.inner, "corrupt", None)

    def __getattr__(self, name: str) -> Any:  # pending(), sync(), info(), path, size_bytes() ...
        return getattr(self.inner, name)

    def on_erasure(self, hook: Callable[[str], None]) -> None:
        """Call `hook(user_id)` after each `forget_user`, once the erasure is recorded: the
        read side registers here (a bound method, held weakly) to purge what it derived from
        the decrypted log. A hook's error propagates out of `forget_user` (the key is gone
        and the erasure recorded; what the hook did not finish, the next open finishes)."""
        self._erasure_hooks.append(weakref.WeakMethod(hook))

    def forget_user(self, user_id: str, reason: str | None = None) -> Event:
        """Destroy the user's key and record that it was destroyed (irreversible), then let the
        read side purge its derived copies (`on_erasure`)."""
        self.keys.destroy(user_id)
        event = new_event(UserForgotten(user_id=user_id, reason=reason), actor=Actor(user_id=None))
        recorded = self.inner.append(user_stream(user_id), [event])[0]
        for ref in list(self._erasure_hooks):
            hook = ref()
            if hook is None:
                self._erasure_hooks.remove(ref)
            else:
                hook(user_id)
        return recorded

    def close(self) -> None:
        self.inner.close()


__all__ = ["ENC", "ERASED", "EncryptedStore"]
