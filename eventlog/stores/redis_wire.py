"""Redis's wire format (RESP) packed by hand for the append hot path, and fork tracking.

redis-py's packer checks and copies every argument on every call; the append path packs the
per-stream start of its command once (`packed_args`) and completes it per call
(`pack_command`). Held connections are a process's own: `forks()` tells a store made before
a fork that it now runs in a child.
"""

from __future__ import annotations

import os
from typing import Any

_forks = 0  # how many forks deep this process is: a store made before a fork notices it


def _forked() -> None:
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):  # (POSIX; nothing forks elsewhere)
    os.register_at_fork(after_in_child=_forked)


def _raw_reply(response: Any, **options: Any) -> Any:
    return response


def _packed_args(args: list[Any]) -> bytes:
    """Arguments (str, int or bytes) in RESP, without the command header: the start of a
    command that `_pack_command` completes."""
    return _pack_command(b"", 0, args).partition(b"\r\n")[2]


def _pack_command(packed: bytes, count: int, args: list[Any]) -> bytes:
    """A Redis command in RESP: `count` arguments already packed in `packed`, then `args`
    (str, int or bytes). The bytes redis-py's packer sends, without its per-call checks and
    copies of every argument."""
    parts = [b"*%d\r\n" % (count + len(args)), packed]
    for arg in args:
        kind = type(arg)
        if kind is bytes:
            data = arg
        elif kind is str:
            data = arg.encode()
        elif kind is int:
            data = b"%d" % arg
        elif isinstance(arg, str):  # a str subclass (an enum's value, say)
            data = str.encode(arg)
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % int(arg)
        else:
            data = bytes(arg)
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def forks() -> int:
    """How many forks deep this process is."""
    return _forks
