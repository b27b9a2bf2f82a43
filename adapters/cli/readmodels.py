"""Read-model commands: rebuild the shared read index from the log, or check it against a
fresh fold (`reindex --check`, exit 1 on a difference).

The index (SQLite beside a file log, keys beside a Redis log) is derived data: rebuilding it
is always safe, and readers keep working meanwhile (they fold what they need as they go).
"""

from __future__ import annotations

import argparse

from adapters.cli.common import UserError, progress_bar
from adapters.cli.output import Output
from adapters.cli.registry import command
from eventlog import EventStore
from projections.index import Indexer, decrypts, open_index
from projections.index.check import index_differences
from projections.index.fallback_reads import fallback_primary


def _indexed_log(store: EventStore) -> EventStore:
    """The log the shared index is of: a fallback store's is its primary's (Redis; what waits
    in the file is folded once it is replayed)."""
    primary = fallback_primary(store)
    return primary if primary is not None else store


def read_model_differences(store: EventStore) -> list[str]:
    """What differs between the store's shared index (brought up to the log first) and a
    fresh fold; empty when they agree or the store keeps its read models in each process."""
    store = _indexed_log(store)
    index = open_index(store)
    if index is None:
        return []
    try:
        Indexer(store, index).catch_up()
        return index_differences(store, index)
    finally:
        index.close()


def _reindex_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true",
                   help="do not rebuild: compare the index with a fresh fold of the log (exit 1 on a difference)")


@command("reindex", "rebuild the shared read models from the log (--check: compare them with a fresh fold)",
         _reindex_args)
def cmd_reindex(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    store = _indexed_log(store)
    index = open_index(store)
    if index is None:
        raise UserError(f"{type(store).__name__} keeps its read models in each process: nothing to reindex",
                        "the shared index exists for file:// and redis:// logs (and Redis with the file fallback)")
    try:
        indexer = Indexer(store, index)
        total = store.last_position()
        events = sum(total.offsets.values())
        if args.check:
            with progress_bar(out, "folding", events):
                indexer.catch_up()
                problems = index_differences(store, index)
            doc = {"index": index.where, "ok": not problems, "cursor": str(total), "differences": problems}
            out.document(doc, title="read models")
            return 0 if not problems else 1
        done = 0
        with progress_bar(out, "reindexing", events) as advance:
            def step(n: int) -> None:
                nonlocal done
                done += n
                advance(done, events)

            # (on an encrypted log the rebuild is a purge too: it scrubs and tells every process)
            folded = indexer.purge(progress=step) if decrypts(store) else indexer.reindex(progress=step)
        stale = index.stale_schemas()  # (earlier schemas' indexes: a schema bump leaves them)
        pruned = index.prune_stale() if stale else 0
        out.document({"index": index.where, "events": folded, "cursor": str(store.last_position()),
                      "dropped_schemas": ", ".join(map(str, stale)) or "none", "dropped_keys": pruned},
                     title="reindexed")
        return 0
    finally:
        index.close()
