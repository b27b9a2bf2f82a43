"""Moving a log between stores: `export` writes it as JSONL (one event per line, the codec's
encoding, streamed), `import` appends such a file to the configured store.

Import appends each stream's events with their original ids, so it is idempotent (a re-import
finds every id stored and changes nothing) and an export imported elsewhere folds into the
same projections. Versions, positions and chain hashes are the target's own: they are
re-sealed on append, which is why they are stripped here first."""

from __future__ import annotations

import argparse
import os
import sys
from typing import IO

import msgspec

from adapters.cli.common import progress_bar
from adapters.cli.output import Output
from adapters.cli.registry import command
from eventlog import Event, EventStore, codec

BATCH = 500  # events per append: one round trip to Redis, one write to the file store


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="-", help="file to write, created 0600 (default: - for stdout)")


@command("export", "the whole log as JSONL, one event per line (streamed)", _export_args)
def cmd_export(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    to_file = args.out != "-"
    target: IO[bytes]
    if to_file:  # the log holds personal data: never world-readable, whatever the umask
        target = os.fdopen(os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
    else:
        target = sys.stdout.buffer
    total = sum(store.last_position().offsets.values()) if sys.stderr.isatty() else None
    n = 0
    try:
        with progress_bar(out, "exporting", total) as advance:
            for event in store.read_all():
                target.write(codec.encode(event) + b"\n")
                n += 1
                if n % 1000 == 0:
                    advance(n)
        target.flush()
    finally:
        if to_file:
            target.close()
    if to_file or out.machine:
        out.say(f"exported {n} events" + (f" to {args.out}" if to_file else ""))
    return 0


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a JSONL export, or - for stdin")


@command("import", "append a JSONL export to the store (idempotent: same event ids)", _import_args)
def cmd_import(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    source: IO[bytes] = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    size = os.fstat(source.fileno()).st_size if args.file != "-" else None
    counts = {"imported": 0, "already_present": 0, "unreadable_lines": 0}
    batch: list[Event] = []

    def flush() -> None:
        if not batch:
            return
        stream = batch[0].stream
        before = store.head(stream).version
        store.append(stream, [_placeless(e) for e in batch])
        added = store.head(stream).version - before
        counts["imported"] += added
        counts["already_present"] += len(batch) - added
        batch.clear()

    with source, progress_bar(out, "importing", size) as advance:
        read = 0
        for number, line in enumerate(source, start=1):
            read += len(line)
            if not line.strip():
                continue
            try:
                event = codec.decode(line.rstrip(b"\r\n"), upcast=False)
            except Exception as exc:  # a damaged line: report it, keep the rest
                counts["unreadable_lines"] += 1
                out.err.print(f"line {number}: skipped ({str(exc)[:200]})", markup=False)
                continue
            if batch and (event.stream != batch[0].stream or len(batch) >= BATCH):
                flush()
            batch.append(event)
            if number % 1000 == 0:
                advance(read if size is not None else number)
        flush()
    out.document({**counts, "source": args.file}, title="import")
    return 0 if counts["unreadable_lines"] == 0 else 1


def _placeless(event: Event) -> Event:
    """The event as a caller would append it: the target assigns its own place and chain."""
    return msgspec.structs.replace(event, stream="", version=0, position=0, partition=0, prev_hash="", hash="")


