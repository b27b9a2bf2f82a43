"""Stream names: validation, and a safe way to build them from arbitrary ids.

A stream name is `kind/id` (for example `session/0b6f...`, `user/alice@example.com`). Names
end up in Redis keys and index files, so they are bounded, printable, free of path tricks and
of `{}` (Redis Cluster hash-tag syntax, which would move the stream to another slot).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from eventlog.errors import InvalidStreamName

MAX_STREAM_NAME = 256
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f{}\\]")


_VALID: dict[str, None] = {}  # names that passed, so the append path checks a name once
_VALID_MAX = 4096


def validate_stream(name: object) -> str:
    """Return `name` (as a plain `str`) if it is a valid stream name, else raise
    `InvalidStreamName` saying why."""
    if type(name) is str and name in _VALID:
        return name
    name = _check_stream(name)
    if len(_VALID) >= _VALID_MAX:
        _VALID.clear()
    _VALID[name] = None
    return name


def _check_stream(name: object) -> str:
    if not isinstance(name, str):
        raise InvalidStreamName(f"stream name must be a string, got {type(name).__name__}")
    if type(name) is not str:
        name = str.__str__(name)  # a str subclass (an enum member): its text, not its repr
    if not name:
        raise InvalidStreamName("stream name is empty")
    if len(name) > MAX_STREAM_NAME:
        raise InvalidStreamName(f"stream name is {len(name)} characters; at most {MAX_STREAM_NAME}")
    bad = _FORBIDDEN.search(name)
    if bad:
        raise InvalidStreamName(
            f"stream name {name[:40]!r} contains {bad.group()!r} at {bad.start()}: "
            "no whitespace, control characters, braces or backslashes"
        )
    if name.startswith("/") or name.endswith("/") or "//" in name:
        raise InvalidStreamName(f"stream name {name[:40]!r} has an empty path segment")
    if any(part in (".", "..") for part in name.split("/")):
        raise InvalidStreamName(f"stream name {name[:40]!r} has a '.' or '..' segment")
    return name


_ID_FIELD = {"session": "session_id", "user": "user_id", "workflow": "workflow name / session_id",
             "records": "table"}


def stream_for(kind: str, ident: str) -> str:
    """`kind/ident` with `ident` percent-encoded where it would make an invalid name."""
    if not isinstance(ident, str) or not ident:
        raise InvalidStreamName(f"{_ID_FIELD.get(kind, kind + ' id')} must be a non-empty string, "
                                f"got {ident!r}"[:200])
    safe = quote(ident, safe="-_.:@+=,;!~*'()$&")
    if safe in (".", ".."):
        safe = quote(safe, safe="")
        safe = safe.replace(".", "%2E")
    return validate_stream(f"{kind}/{safe}")


def session_stream(session_id: str) -> str:
    """Where a session's events live: its row, state, summary and runs."""
    return stream_for("session", session_id)


def user_stream(user_id: str | None) -> str:
    """Where a user's memories live (memories with no user go to `memories/anonymous`)."""
    return stream_for("user", user_id) if user_id else "memories/anonymous"


def workflow_stream(workflow: str, session_id: str | None) -> str:
    return stream_for("workflow", f"{workflow}/{session_id}" if session_id else workflow)


def record_stream(table: str) -> str:
    """Rows of Agno's other tables (metrics, knowledge, evals, traces, ...)."""
    return stream_for("records", table)
