"""The fallback's record of the log it buffers for: the primary's log id and positions seen.

Kept in the fallback directory (`primary.identity`, 0600, written atomically), so that a
process started after Redis lost the log — restarted empty, flushed, replaced — still knows
which log the pending events belong to, and never replays them into another one. Written
when the primary's id is first seen or changes, and with the positions seen when the
fallback takes over and at close.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import msgspec

FILE = "primary.identity"


class Record(msgspec.Struct, kw_only=True):
    log_id: str
    seen: dict[int, int] = {}


def load(directory: Path | None) -> Record | None:
    """The record in `directory` (None: none yet, or unreadable: then it is written anew)."""
    if directory is None:
        return None
    try:
        return msgspec.json.decode((directory / FILE).read_bytes(), type=Record)
    except (FileNotFoundError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def save(directory: Path | None, record: Record) -> None:
    """Write the record atomically (a temp file of this writer's own, then rename); the
    positions never go backwards (another process may have seen more)."""
    if directory is None:
        return
    old = load(directory)
    if old is not None and old.log_id == record.log_id:
        record = Record(log_id=record.log_id, seen={p: max(n, old.seen.get(p, 0)) for p, n in
                                                    {**old.seen, **record.seen}.items()})
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=FILE + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(msgspec.json.encode(record))
        os.replace(tmp, directory / FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def forget(directory: Path | None) -> None:
    """Drop the record (the operator adopted the log the primary holds now)."""
    if directory is not None:
        with contextlib.suppress(FileNotFoundError):
            (directory / FILE).unlink()
