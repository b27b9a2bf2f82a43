"""Health commands: is the log intact (verify), is the store set up so it cannot silently lose
data (doctor), and bringing a Redis store up to date after an outage (sync).

`verify` and `doctor` exit 1 when they find a problem, so they can gate scripts and cron jobs;
a user mistake still exits 2 like everywhere else."""

from __future__ import annotations

import argparse
import re
import stat
from pathlib import Path
from typing import Any

from adapters.cli.common import UserError, find_layer, layers, progress_bar
from adapters.cli.output import Output
from adapters.cli.readmodels import read_model_differences
from adapters.cli.registry import command
from eventlog import EventStore, StoreUnavailable, redact_url
from eventlog.errors import EventLogError
from eventlog.fallback import FallbackStore
from eventlog.integrity import write_checkpoint
from eventlog.jsonl import JsonlStore

# --- verify -------------------------------------------------------------------------------

_ROOT = re.compile(r"^[0-9a-fA-F]{64}$")


def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resume", action="store_true", help="start from the newest checkpoint (fast on big logs)")
    p.add_argument("--expect-root", metavar="HEX", help="fail unless the final root equals this (from an earlier run)")
    p.add_argument("--checkpoint", action="store_true", help="append a checkpoint after a clean verify")
    p.add_argument("--read-models", action="store_true",
                   help="also compare the shared read index with a fresh fold (as `reindex --check`)")


@command("verify", "check every hash, chain link and position; exit 1 on a break", _verify_args)
def cmd_verify(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    if args.expect_root is not None and not _ROOT.match(args.expect_root):
        raise UserError(f"--expect-root {args.expect_root[:80]!r} is not a root",
                        "a root is the 64 hex digits an earlier `eventlog verify` printed")
    with progress_bar(out, "verifying") as advance:
        report = store.verify(resume=args.resume, expect_root=args.expect_root, progress=advance)
    doc: dict[str, Any] = {"ok": report.ok, "events": report.events, "streams": report.streams,
                           "root": report.root, "cursor": report.cursor, "checkpoints": report.checkpoints,
                           "resumed_from": report.resumed_from, "recovered": report.recovered, "first_break": None}
    if report.first_break is not None:
        b = report.first_break
        doc["first_break"] = {"kind": b.kind, "stream": b.stream, "version": b.version, "id": b.id,
                              "position": b.position, "partition": b.partition, "detail": b.detail}
    models_ok = True
    if args.read_models:
        problems = read_model_differences(store)
        models_ok = not problems
        doc["read_models"] = {"ok": models_ok, "differences": problems}
    if report.ok and args.checkpoint:
        event = write_checkpoint(store)
        doc["checkpoint"] = {"id": event.id, "position": event.position}
    if out.machine:
        out.document(doc)
    else:
        out.document({k: v for k, v in doc.items() if k != "first_break"}, title="verify")
        if doc["first_break"] is not None:
            out.document(doc["first_break"], title="FIRST BREAK")
        elif not report.ok:
            out.say("root mismatch: the log differs from the one the expected root was taken from")
    return 0 if report.ok and models_ok else 1


# --- doctor -------------------------------------------------------------------------------


class Checks:
    """Doctor's findings: `ok`, `warn` (risk to data: exit 1) or `error` (cannot tell / broken)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, name: str, ok: bool, detail: str, severity: str = "warn") -> None:
        self.rows.append({"check": name, "status": "ok" if ok else severity, "detail": detail})

    @property
    def healthy(self) -> bool:
        return all(r["status"] == "ok" for r in self.rows)


@command("doctor", "check the configured store for risks to your data; exit 1 on a warning")
def cmd_doctor(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    checks = Checks()
    for layer in layers(store):
        if callable(getattr(layer, "info", None)):
            _check_redis(layer, checks)
        if isinstance(layer, JsonlStore):
            _check_files(layer, checks)
    fallback = find_layer(store, FallbackStore)
    if fallback is not None and fallback.lost is not None:
        checks.add("fallback's log", False, redact_url(str(fallback.lost)), "error")
    if fallback is not None:
        n = fallback.pending()
        checks.add("pending fallback events", n == 0,
                   "none" if n == 0 else f"{n} events wait for Redis (run: eventlog sync)")
    if not checks.rows:
        checks.add("store", True, f"{type(store).__name__}: nothing to check (memory:// keeps nothing)")
    out.rows(checks.rows, ("check", "status", "detail"), title=f"doctor: {redact_url(store.url)}", key="checks",
             extra={"url": redact_url(store.url), "healthy": checks.healthy})
    return 0 if checks.healthy else 1


def _check_redis(layer: Any, checks: Checks) -> None:
    try:
        info: dict[str, Any] = layer.info()
    except StoreUnavailable as exc:
        checks.add("redis reachable", False, redact_url(str(exc)), "error")
        return
    checks.add("redis reachable", True, f"{redact_url(str(info.get('url', '')))} (Redis {info.get('redis_version')}, "
                                       f"{_mb(info.get('used_memory'))} used)")
    if "log_problem" in info:
        problem = info["log_problem"]
        checks.add("log identity", problem is None,
                   f"log {info.get('log_id')}" if problem is None else redact_url(str(problem)), "error")
    aof, save = bool(info.get("aof_enabled")), str(info.get("rdb_save") or "").strip()
    if aof:
        detail = "AOF on" + (f", RDB save {save}" if save else "")
    elif save:
        detail = f"AOF off, RDB save {save!r}: a crash loses the writes since the last snapshot (appendonly yes)"
    else:
        detail = ("AOF off and RDB off (save \"\"): a Redis restart LOSES THE WHOLE LOG — set appendonly yes "
                  "(or CONFIG is disabled here: check your provider's persistence settings)")
    checks.add("redis persistence", aof or bool(save), detail, "error" if not (aof or save) else "warn")
    policy = str(info.get("maxmemory_policy") or "")
    checks.add("maxmemory-policy", policy in ("noeviction", ""),
               policy if policy in ("noeviction", "") else
               f"{policy}: Redis may EVICT log streams under memory pressure; use noeviction")
    if info.get("cluster"):
        state = info.get("cluster_state")
        checks.add("cluster state", state == "ok", f"cluster_state={state}, {info.get('partitions')} partitions",
                   "error")
    _check_stale_index(layer, checks)


def _check_stale_index(layer: Any, checks: Checks) -> None:
    """An earlier schema's read index left in Redis (a schema bump rebuilds the index under
    new key names): memory Redis holds for nothing once the previous version is gone."""
    from projections.index import open_index

    try:
        index = open_index(layer)
        if index is None:
            return
        try:
            stale = index.stale_schemas()
        finally:
            index.close()
    except EventLogError:  # (Redis away, the log lost: the checks above report that)
        return
    checks.add("earlier read indexes", not stale,
               "none" if not stale else
               f"the read index of schema {', '.join(map(str, stale))} is still in Redis: once no process of the "
               "previous version runs, `eventlog reindex` drops it", "warn")


def _check_files(layer: JsonlStore, checks: Checks) -> None:
    root = Path(layer.path)
    mode = _mode(root)
    checks.add("file store directory", mode & 0o077 == 0, f"{root} mode {mode:o}" +
               ("" if mode & 0o077 == 0 else " (want 700: others can read the log)"))
    loose_dirs = [p for p in root.rglob("*") if p.is_dir() and _mode(p) & 0o077]
    loose_files = [p for p in root.rglob("*") if p.is_file() and _mode(p) & 0o077]
    loose = [str(p.relative_to(root)) for p in loose_dirs + loose_files]
    checks.add("file permissions", not loose,
               "all files 0600, directories 0700" if not loose else
               f"readable by others: {', '.join(loose[:5])}{' ...' if len(loose) > 5 else ''} (chmod go-rwx)")
    bad = len(layer.recovered) + len(layer.corrupt)
    checks.add("file store lines", bad == 0, "clean" if not bad else
               f"{len(layer.recovered)} torn tails set aside, {len(layer.corrupt)} corrupt lines skipped "
               "(run: eventlog verify)")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _mb(value: Any) -> str:
    return f"{int(value) / 1_048_576:.1f} MiB" if isinstance(value, (int, str)) and str(value).isdigit() else "?"


# --- sync ---------------------------------------------------------------------------------


def _sync_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adopt", action="store_true",
                   help="accept the log Redis holds now as the fallback's (after `eventlog import` of an export "
                        "into a Redis that had lost the log), then replay into it")


@command("sync", "replay events kept in the file fallback (while Redis was away) into Redis", _sync_args)
def cmd_sync(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    fallback = find_layer(store, FallbackStore)
    if fallback is None:
        raise UserError(f"{redact_url(store.url)} is not a Redis store with a file fallback: nothing to sync",
                        "set REDIS_URL (the fallback is MEMORY_DIR/fallback), or: --url redis://... --fallback DIR")
    fallback.stop_auto_sync()  # this command is the sync: no background thread racing it
    if args.adopt:
        fallback.adopt_primary()
    before = fallback.pending()
    with progress_bar(out, "syncing", before) as advance:
        result = fallback.sync(progress=lambda done, total: advance(done, total))
    doc = {"primary": redact_url(fallback.primary.url), "fallback": redact_url(fallback.secondary.url),
           "pending_before": before, "replayed": result.replayed, "already_present": result.already_present,
           "remaining": fallback.pending(), "complete": result.complete}
    out.document(doc, title="sync")
    return 0
