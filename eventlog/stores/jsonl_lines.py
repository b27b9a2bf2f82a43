"""Reading one stream's lines out of the file log: a few `pread`s of the windows that hold them.

A stream's events are lines scattered through the segments, in version order (an append
writes after everything before it, so a stream's locations only ever grow). Lines near each
other are read with one `pread` of the window that holds them; other streams' lines in
between are read but not decoded. A stream written turn by turn sits in a few windows, so
reading a long session costs a few system calls, not one per event.

`lines(runs=True)` goes one step further for a reader that decodes many lines in one call
(`JsonlStore.read_for_fold`): where a window holds nothing but the stream's own lines (a
session written by one agent, no other stream in between), the window *is* those lines,
newline-separated, and is handed over whole — no Python work per line, no copy.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator

from eventlog.stores.jsonl_index import MISSING, pack, unpack

READ_WINDOW = 256 << 10  # the most bytes one pread of a stream read covers (one line may exceed it)

Pread = Callable[[int, int, int], bytes]  # (segment, length, offset) -> the bytes there


def lines(pread: Pread, locs: array[int], lengths: array[int], first: int, stop: int, *,
          runs: bool = False) -> Iterator[bytes | memoryview]:
    """The lines of the slots `first..stop-1` (versions `first+1..stop`), in order, without
    their newline; a MISSING slot (an unreadable line, which the store reports) is left out.

    `runs`: one item per window instead, its lines one newline apart — the window as read
    where it holds nothing but these lines (no Python work per line), else the lines cut
    out of it and joined — for a reader that decodes many lines in one call."""
    i = first
    while i < stop:
        loc = locs[i]
        if loc == MISSING:
            i += 1
            continue
        segment, start = unpack(loc)
        # The window: the slots whose line starts within READ_WINDOW of `start`. Locations
        # grow with the version, so they are found by bisection, and they are all in this
        # segment (the bound is below the next segment's first location). A MISSING slot
        # (past every location) ends the window; it is skipped next round.
        j = max(i + 1, bisect_right(locs, pack(segment, start + READ_WINDOW - 1), i, stop))
        if j > i + 1 and MISSING in locs[i:j]:
            j = locs.index(MISSING, i, j)
        if j == i + 1:
            yield pread(segment, lengths[i], start)
            i = j
            continue
        end = (locs[j - 1] & _OFFSET) + lengths[j - 1]
        window = pread(segment, end - start, start)
        if runs and sum(lengths[i:j]) + (j - i - 1) == end - start:
            yield window  # nothing but these lines, one newline apart: the window as it is
        else:
            view = memoryview(window)
            cut = (view[(locs[k] & _OFFSET) - start:(locs[k] & _OFFSET) - start + lengths[k]] for k in range(i, j))
            if runs:
                yield b"\n".join(cut)
            else:
                yield from cut
        i = j


_OFFSET = (1 << 40) - 1  # location = segment << 40 | offset (see jsonl_index)
