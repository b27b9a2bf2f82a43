"""Commands that act: demo, fork, verify, sync, doctor, export, import."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from adapters.cli.output import Output
from adapters.cli.read import UserError, _point, _require_session
from eventlog import EventStore, StoreUnavailable, codec, redact_url
from eventlog.fallback import FallbackStore
from eventlog.integrity import verify, write_checkpoint
from eventlog.jsonl import JsonlStore
from eventlog.store import _dedupe_batch
from projections import fork_session


@contextmanager
def progress_bar(out: Output, label: str, total: int | None) -> Iterator[Any]:
    """A progress bar on stderr when it is a terminal; a no-op otherwise."""
    if not sys.stderr.isatty():
        yield lambda done, total=None: None
        return
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=out.err, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done, total=None: bar.update(task, completed=done, total=total)


def cmd_demo(store_url: str | None, args: argparse.Namespace, out: Output) -> int:
    from adapters.demo import run_demo

    result = run_demo(store_url, console=out.err if out.machine else out.out)
    if out.machine:
        out.document({k: getattr(result, k) for k in result.__dataclass_fields__})
    return 0 if result.verify_ok else 1


def cmd_fork(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    _require_session(store, args.session)
    new_id = fork_session(store, args.session, _point(args.at), args.new)
    out.document({"session_id": new_id, "forked_from": args.session, "at": args.at}, title="forked")
    return 0


def cmd_verify(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    with progress_bar(out, "verifying", None) as advance:
        report = verify(store, resume=args.resume, expect_root=args.expect_root, progress=advance)
    doc: dict[str, Any] = {"ok": report.ok, "events": report.events, "streams": report.streams, "root": report.root,
                           "cursor": report.cursor, "checkpoints": report.checkpoints,
                           "resumed_from": report.resumed_from}
    if report.first_break is not None:
        b = report.first_break
        doc["first_break"] = {"kind": b.kind, "stream": b.stream, "version": b.version, "id": b.id,
                              "position": b.position, "detail": b.detail}
    if report.ok and args.checkpoint:
        event = write_checkpoint(store)
        doc["checkpoint"] = {"id": event.id, "position": event.position}
    out.document(doc, title="verify")
    if not report.ok and not out.machine:
        out.err.print(f"BROKEN: {report.first_break}", markup=False)
    return 0 if report.ok else 1


def cmd_sync(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    if not isinstance(store, FallbackStore):
        raise UserError(f"{redact_url(store.url)} has no fallback to sync",
                        "sync needs Redis with a file fallback: set REDIS_URL, or --url redis://... --fallback DIR")
    total = store.pending()
    with progress_bar(out, "syncing", total) as advance:
        summary = store.sync(progress=lambda done, total: advance(done, total))
    out.document({"pending_before": total, "replayed": summary.replayed, "already_present": summary.already_present,
                  "remaining": store.pending(), "primary": redact_url(store.primary.url),
                  "fallback": store.secondary.url}, title="sync")
    return 0


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def cmd_doctor(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str, severity: str = "warn") -> None:
        checks.append({"check": name, "status": "ok" if ok else severity, "detail": detail})

    stores = [store.primary, store.secondary] if isinstance(store, FallbackStore) else [store]
    for s in stores:
        info = getattr(s, "info", None)
        if callable(info):
            try:
                i = info()
            except StoreUnavailable as exc:
                check("redis reachable", False, str(exc), "error")
                continue
            check("redis reachable", True, f"{i['url']} (Redis {i['redis_version']})")
            durable = i["aof_enabled"] or bool(i["rdb_save"].strip())
            check("redis persistence", durable,
                  "AOF on" if i["aof_enabled"] else (f"RDB save {i['rdb_save']}" if durable else
                  "AOF off and RDB off: a Redis restart LOSES THE WHOLE LOG (set appendonly yes)"), "error")
            check("maxmemory-policy", i["maxmemory_policy"] in ("noeviction", ""),
                  f"{i['maxmemory_policy']}" + ("" if i["maxmemory_policy"] in ("noeviction", "") else
                                                 ": Redis may EVICT streams under memory pressure; use noeviction"))
            if i.get("cluster"):
                check("cluster state", i.get("cluster_state") == "ok", f"cluster_state={i.get('cluster_state')}",
                      "error")
        if isinstance(s, JsonlStore):
            dir_mode = _mode(s.path)
            check("file store directory", dir_mode & 0o077 == 0, f"{s.path} mode {dir_mode:o} (want 700)")
            loose = [p.name for p in s.path.glob("*.jsonl") if _mode(p) & 0o077]
            check("file store files", not loose, "all 0600" if not loose else f"looser than 0600: {', '.join(loose)}")
            check("file store tail", not s.recovered and not s.corrupt,
                  "clean" if not (s.recovered or s.corrupt) else f"{len(s.recovered)} torn, {len(s.corrupt)} corrupt")
    if isinstance(store, FallbackStore):
        n = store.pending()
        check("pending fallback events", n == 0, f"{n} events wait for Redis (run: eventlog sync)")
    out.rows(checks, ("check", "status", "detail"), title=f"doctor: {redact_url(store.url)}", key="checks")
    return 0 if all(c["status"] == "ok" for c in checks) else 1


def cmd_export(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    target: IO[bytes]
    own = args.out not in (None, "-")
    if own:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        target = os.fdopen(fd, "wb")
    else:
        target = sys.stdout.buffer
    n = 0
    with progress_bar(out, "exporting", None) as advance:
        for event in store.read_all():
            target.write(codec.encode(event) + b"\n")
            n += 1
            if n % 1000 == 0:
                advance(n)
    target.flush()
    if own:
        target.close()
    out.say(f"exported {n} events")
    return 0


def cmd_import(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    source: IO[bytes] = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    imported = skipped = bad = 0
    batch: list[Any] = []
    stream = None

    def flush() -> None:
        nonlocal imported, skipped, batch
        if batch and stream is not None:
            before = store.head(stream).version
            store.append(stream, [_placeless(e) for e in _dedupe_batch(stream, batch)])
            added = store.head(stream).version - before
            imported += added
            skipped += len(batch) - added
        batch = []

    with source, progress_bar(out, "importing", None) as advance:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            try:
                event = codec.decode(line.rstrip(b"\n"), upcast=False)
            except Exception as exc:
                bad += 1
                out.err.print(f"line {number}: skipped ({exc})", markup=False)
                continue
            if event.stream != stream or len(batch) >= 500:
                flush()
                stream = event.stream
            batch.append(event)
            if number % 1000 == 0:
                advance(number)
        flush()
    out.document({"imported": imported, "already_present": skipped, "unreadable_lines": bad}, title="import")
    return 0 if bad == 0 else 1


def _placeless(event: Any) -> Any:
    import msgspec

    return msgspec.structs.replace(event, stream="", version=0, position=0, partition=0, prev_hash="", hash="")
