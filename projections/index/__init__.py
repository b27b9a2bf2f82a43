"""Shared, persistent read models: the derived index beside the log (SQLite or Redis).

The log stays the source of truth. An index holds the read models' rows (sessions, memories,
records, workflows, run locations) keyed by entity, the orderings queries page through
(sorted sets), and per partition the position it has folded up to — written in one
transaction with the rows, so a crash between an append and its index update leaves the
index behind, never wrong, and the next reader folds what is missing (pyeventsourcing's
tracking records; Marten's async daemon). Several processes share one index; each folds
the log's tail into it under the index's own lock, so every event is folded once.
"""

from projections.index.base import INDEX_SCHEMA, IndexTxn, Member, ReadIndex, decrypts, open_index
from projections.index.indexer import Indexer

__all__ = ["INDEX_SCHEMA", "IndexTxn", "Indexer", "Member", "ReadIndex", "decrypts", "open_index"]
