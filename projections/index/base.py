"""The contract of a read index: rows by (kind, key), sorted sets of keys, a tracking cursor.

Two backends implement it — `SqliteIndex` (the file store's, a WAL database beside the
segments) and `RedisIndex` (keys beside each partition, under its hash tag) — and tests hold
both to the same behaviour. Everything is partitioned the way the log is: a row lives in the
partition of the stream whose events make it, so on Redis Cluster an index update touches one
slot and is one transaction with that partition's cursor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

INDEX_SCHEMA = 16
"""The shape of what an index holds. Bump it when a row type or an ordering changes: an index
of another schema is rebuilt from the log, never served (Redis keys carry it in their names)."""

MEMORY_TEXT_KIND = "mtext"
"""Rows of each memory's text, lower-cased, by memory id (see `indexer.memory_text`): what a
`search_content` search tests instead of reading and decoding every memory row it might keep."""

TEXT_KINDS = frozenset({MEMORY_TEXT_KIND})
"""Kinds whose rows are UTF-8 text a substring search tests (`page_containing`): a backend
with a text index keeps them in it too (SQLite: an FTS5 trigram table), so a search reads the
rows holding the needle's pieces, not every row of the kind."""

KEY_ORDERED = "k:"
"""Orderings whose names start with this hold every key at score 0: their keys order them
(an encoded value, a session id). A backend may keep them without scores; SQLite keeps them
without the second index by score that costs every other ordering a write per entry."""

FEW_CANDIDATES = 8
"""A search's candidates (`page_containing`'s `among`) at which narrowing them by one more
trigram stops: their few name rows are read and tested instead (one read either way)."""

Member = tuple[str, float]
"""A row's place in one ordering: (sorted-set name, score)."""


class Ranked(NamedTuple):
    key: str
    score: float


class IndexTxn(ABC):
    """One partition's update: reads see the index as of the transaction's start (plus its
    own writes for rows); `commit` writes everything and the new cursor atomically, or
    returns False when another process moved the cursor first (nothing is written)."""

    partition: int
    base: int  # the partition's cursor when the transaction began
    trusted: bool = True  # False: `base` is what this process last left (the commit checks it)

    @abstractmethod
    def get(self, kind: str, key: str) -> bytes | None: ...

    @abstractmethod
    def keys(self, ordering: str) -> list[str]:
        """Every key of a sorted set, in order (ascending score, then key)."""

    @abstractmethod
    def put(self, kind: str, key: str, data: bytes, old: Iterable[Member], new: Iterable[Member]) -> None: ...

    @abstractmethod
    def delete(self, kind: str, key: str, old: Iterable[Member]) -> None: ...

    @abstractmethod
    def reorder(self, key: str, old: Iterable[Member], new: Iterable[Member]) -> None:
        """Move `key` from the orderings `old` to `new`, with no row of its own: an ordering
        whose keys stand for something else (`indexer.value_members`' encoded values)."""

    @abstractmethod
    def next_seq(self) -> int:
        """A number that grows with every call, in this partition (insertion order)."""

    @abstractmethod
    def commit(self, upto: int) -> bool: ...

    @abstractmethod
    def rollback(self) -> None: ...


class ReadIndex(ABC):
    """See the module docstring. Reads never fold: they answer from what is indexed (the
    `Indexer` brings the index up to the log first)."""

    partitions: int = 1
    where: str = ""  # for messages: the file or Redis it lives in

    @abstractmethod
    def cursors(self) -> dict[int, int]:
        """Per partition, the last position folded in (0: nothing)."""

    @abstractmethod
    def begin(self, partition: int) -> IndexTxn: ...

    @abstractmethod
    def get_many(self, kind: str, keys: list[str], partition: int | None = None) -> list[bytes | None]:
        """Rows by key; `partition` None looks in every partition."""

    @abstractmethod
    def scan(self, kind: str) -> Iterator[tuple[str, bytes]]:
        """Every row of a kind (whole-table reads: small tables, checks, reindex)."""

    def scan_chunks(self, kind: str, chunk: int = 5000) -> Iterator[list[tuple[str, bytes]]]:
        """`scan(kind)` a chunk at a time, in no particular order, each row once: a walk of a
        whole kind that holds a chunk at once, not the kind."""
        rows = list(self.scan(kind))
        for at in range(0, len(rows), chunk):
            yield rows[at:at + chunk]

    @abstractmethod
    def page(self, ordering: str, *, desc: bool, offset: int, limit: int | None) -> list[Ranked]:
        """Keys of a sorted set in order (score, then key; both reversed for `desc`),
        merged across partitions."""

    @abstractmethod
    def between(self, ordering: str, low: float, high: float, *, desc: bool, offset: int,
                limit: int | None) -> list[Ranked]:
        """As `page`, over the keys whose score is in [low, high] only (a range of times:
        what is read is what the range holds)."""

    @abstractmethod
    def count(self, ordering: str) -> int: ...

    def page_rows(self, ordering: str, *, desc: bool, kind: str, offset: int = 0,
                  limit: int | None = None) -> list[tuple[Ranked, bytes]]:
        """`page(ordering, ...)` with each key's row of `kind` (keys without one are left
        out): a walk that needs the rows of an ordering, in one read where the backend can
        join the two."""
        ranked = self.page(ordering, desc=desc, offset=offset, limit=limit)
        out: list[tuple[Ranked, bytes]] = []
        for at in range(0, len(ranked), 5000):
            chunk = ranked[at:at + 5000]
            rows = self.get_many(kind, [r.key for r in chunk])
            out += [(r, data) for r, data in zip(chunk, rows) if data is not None]
        return out

    def window_containing(self, ordering: str, *, desc: bool, kind: str, needle: bytes, offset: int,
                          limit: int | None, whole: bool = False) -> tuple[list[Ranked], int]:
        """`page_containing(...)[offset:offset + limit]` and how many it holds in all: where
        the backend sorts and counts the matches itself, only the page's cross over."""
        found = self.page_containing(ordering, desc=desc, kind=kind, needle=needle, whole=whole)
        return (found[offset:] if limit is None else found[offset:offset + limit]), len(found)

    def page_containing(self, ordering: str, *, desc: bool, kind: str, needle: bytes,
                        among: Sequence[str] = (), whole: bool = False) -> list[Ranked]:
        """The whole of `page(ordering)` (in its order) less the keys whose row of `kind` is
        missing or does not contain `needle`: a substring search over small rows kept for it
        (a session's name), which reads those rows, never the big rows they stand for.
        `among`: orderings each holding every match (trigrams of the needle's), the smallest
        first: only the keys of the first that are in all the others are tested, then placed
        in `ordering` by their scores there. `whole`: the ordering holds (nearly) every row of
        `kind` (all memories), so a backend may test the kind's rows as they lie and score
        only the matches, rather than walk the ordering and look up each row."""
        if not among:
            return [r for r, data in self.page_rows(ordering, desc=desc, kind=kind) if needle in data]
        keys = [r.key for r in self.page(among[0], desc=False, offset=0, limit=None)]
        for other in among[1:]:
            if len(keys) <= FEW_CANDIDATES:  # (testing these few names costs less than a look)
                break
            keys = [k for k, s in zip(keys, self.scores(other, keys)) if s is not None]
        hits = [k for k, data in zip(keys, self.get_many(kind, keys)) if data is not None and needle in data]
        found = [Ranked(k, s) for k, s in zip(hits, self.scores(ordering, hits)) if s is not None]
        found.sort(key=lambda r: (r.score, r.key), reverse=desc)
        return found

    def counts(self, orderings: Sequence[str]) -> list[int]:
        """`count` of each ordering (one round trip where the backend can batch them)."""
        return [self.count(o) for o in orderings]

    @abstractmethod
    def scores(self, ordering: str, keys: list[str]) -> list[float | None]:
        """Each key's score in `ordering` (None: not in it), from whichever partition holds it."""

    @abstractmethod
    def meta(self) -> dict[str, Any]:
        """What the index says of itself: `schema`, `log` (the log identity it folded)."""

    @abstractmethod
    def set_meta(self, key: str, value: str) -> None:
        """Set one entry of `meta()` (dropped by `reset` and replaced by `adopt`)."""

    def cursors_and_purge(self) -> tuple[dict[int, int], str]:
        """`cursors()` with the index's purge mark (`meta()["purged"]`, "" when none), read
        together: a catch-up that finds the log moved reads the cursors anyway, so every
        process learns of a `forget_user` elsewhere (which rebuilds the index and sets a new
        mark) without a round trip of its own, and drops what it cached from before."""
        return self.cursors(), str(self.meta().get("purged", ""))

    @abstractmethod
    def claim_schema(self, schema: int) -> str:
        """Record `schema` if the index has none yet (atomically: of several processes opening
        a new index at once, one sets it) and return the schema the index now has."""

    @abstractmethod
    def reset(self, schema: int) -> None:
        """Drop every row, ordering and cursor (a rebuild starts from nothing) and record
        `schema`."""

    def get(self, kind: str, key: str, partition: int | None = None) -> bytes | None:
        return self.get_many(kind, [key], partition)[0]

    def get_at_log_end(self, kind: str, key: str,
                       partition: int | None = None) -> tuple[dict[int, int], bytes | None] | None:
        """Where the log ends and the row of `kind` at `key`, read together so that the row
        is at least as new as that end (one round trip on Redis: a reader's look at the log
        and its first read); None: this index reads them apart."""
        return None

    def orderings(self, prefix: str) -> list[str]:
        """The names of the non-empty orderings that start with `prefix` (checks only: a
        listing of names, not of their keys)."""
        raise NotImplementedError

    def get_cached(self, kind: str, key: str, partition: int | None = None) -> bytes | None:
        """A row `put_cached` kept (None: none)."""
        return None

    def put_cached(self, kind: str, key: str, data: bytes, partition: int | None = None) -> bool:
        """Keep a row that no fold writes and no ordering lists: a snapshot of one stream's
        fold (see `ConversationCache`), derived like everything here and dropped with the
        rest by `reset`. Outside any transaction and best effort: False when it was not kept
        (an index that keeps none, a disk that refused)."""
        return False

    def note_log_end(self, offsets: dict[int, int]) -> None:  # noqa: B027 - optional
        """Told where the log ends (before each read): an index that caches rows may serve
        them while the log has not moved past what it last committed."""

    def shadow(self) -> ReadIndex | None:
        """A new, empty index of the same kind beside this one, for a rebuild that readers of
        this one must not see half done (`Indexer.reindex`); None: this kind cannot."""
        return None

    def adopt(self, shadow: ReadIndex, finish: Callable[[], object]) -> bool:
        """Make what `shadow` holds this index's content, atomically for readers: each sees
        the old index or the new one, never a mix of one partition's rows. `finish` is called
        first, while this index's writers are held off, to fold the last events into the
        shadow — so the new content is never behind a position anyone saw this one at.
        False: a writer got in first (call again)."""
        raise NotImplementedError

    def discard(self) -> None:  # noqa: B027 - optional
        """Drop a shadow's content (after `adopt`, or a rebuild that failed)."""

    def stale_schemas(self) -> list[int]:
        """Earlier schemas whose index is still stored beside this one (an index rebuilt in
        place, as SQLite's, leaves none)."""
        return []

    def prune_stale(self) -> int:
        """Drop what `stale_schemas` names; the number of keys (or rows) dropped."""
        return 0

    def scrub(self) -> None:  # noqa: B027 - optional
        """Overwrite or drop what deleted rows may still leave readable in the index's own
        storage (SQLite's write-ahead log). Called after `forget_user`'s rebuild."""

    def close(self) -> None:  # noqa: B027 - optional
        pass


def decrypts(store: Any) -> bool:
    """Whether `store` decrypts what it reads (an `EncryptedStore`): its index then holds
    plain text, which every erasure must purge (see `open_index`)."""
    return "EncryptedStore" in {cls.__name__ for cls in type(store).__mro__}


def open_index(store: Any, *, path: Any = None) -> ReadIndex | None:
    """The shared index for `store`, or None where the read models stay in the process:
    the memory store (it ends with the process), the fallback store (its primary's index,
    with what it answers while Redis is away, is `projections.index.fallback_reads`'s), and
    anything else not known here. `path` puts a file store's index elsewhere (tests).

    An encrypted store over a file or Redis log has an index of its own, apart from the one
    of the same log read without its keys (that one folds ciphertext): it holds the
    decrypted read models of users not forgotten, so `forget_user` rebuilds it and scrubs
    what the rebuild freed (`ReadIndex.scrub`; see docs/security.md)."""
    # (By class name, not by import: a store of a module nobody imported cannot be that
    # store, importing redis-py costs a file-store process half a second at start, and the
    # stores' modules may move.)
    decrypted = decrypts(store)
    if decrypted:
        store = store.inner
    names = {cls.__name__ for cls in type(store).__mro__}
    if "JsonlStore" in names:
        from projections.index.sqlite import SqliteIndex, fts5_available

        name = DECRYPTED_SQLITE_NAME if decrypted else "readmodels.sqlite3"
        if not fts5_available():  # (an index without the trigram index is a file of its own: see fts5_available)
            name = name.replace(".sqlite3", "-notext.sqlite3")
        return SqliteIndex(path if path is not None else store.path / name, secure_delete=decrypted)
    if "RedisStreamStore" in names:
        from projections.index.redis import RedisIndex

        return RedisIndex(store, base=DECRYPTED_REDIS_BASE if decrypted else "")
    return None


# Where an encrypted log's index lives: beside the plain one's, under its own name.
DECRYPTED_SQLITE_NAME = "readmodels-decrypted.sqlite3"
DECRYPTED_REDIS_BASE = "d"  # keys <tag>:rm<schema>d:...
