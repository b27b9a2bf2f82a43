"""`SqliteIndex`: the file store's read index, one SQLite database (WAL) beside the segments.

SQLite is the embedded database every Python has: several processes read it at once, one
writes at a time (`BEGIN IMMEDIATE`), and a transaction that holds the rows and the cursor
together makes "folded up to position N" and the rows agree even across a crash. The file
is derived data: deleting it only costs a rebuild, and one that cannot be read is moved
aside and rebuilt (with a warning), never served.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from projections.index.base import KEY_ORDERED, TEXT_KINDS, IndexTxn, Member, Ranked, ReadIndex

log = logging.getLogger("projections.index")

FEW_MATCHES = 2000  # a search of a whole kind with this many matches or fewer places them itself (`window_containing`)

_TEXTS_DDL = ("CREATE VIRTUAL TABLE IF NOT EXISTS texts USING fts5(kind UNINDEXED, key UNINDEXED, body, "
              "tokenize='trigram case_sensitive 1')")
_DDL = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursor (p INTEGER PRIMARY KEY, pos INTEGER NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rows (kind TEXT NOT NULL, key TEXT NOT NULL, data BLOB NOT NULL,
                                 PRIMARY KEY (kind, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ord (name TEXT NOT NULL, key TEXT NOT NULL, score REAL NOT NULL,
                                PRIMARY KEY (name, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ord_by_score ON ord (name, score, key);
CREATE TABLE IF NOT EXISTS kord (name TEXT NOT NULL, key TEXT NOT NULL, score REAL NOT NULL,
                                 PRIMARY KEY (name, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counts (name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS textids (kind TEXT NOT NULL, key TEXT NOT NULL, id INTEGER NOT NULL,
                                    PRIMARY KEY (kind, key)) WITHOUT ROWID;
"""
# `texts`: the rows of `TEXT_KINDS` again, in an FTS5 trigram index (a substring search of
# three characters or more reads the rows holding its pieces: `_matching`), found by
# `textids` when they change. Their text is already lower-cased, so the index compares
# characters as they are (case_sensitive 1): what `in` does.
_TABLES = ("rows", "ord", "kord", "counts", "cursor", "meta", "textids")


_FTS5: list[bool] = []


def fts5_available() -> bool:
    """Whether this Python's SQLite has FTS5 (some builds lack it: python-build-standalone's,
    uv's, in some releases; Android's). Without it an index keeps no trigram index and a
    search tests the text rows as they lie; such an index is a file of its own
    (`base.open_index`), since it cannot keep another process's trigram index current."""
    if not _FTS5:
        conn = sqlite3.connect(":memory:")
        try:
            conn.execute("CREATE VIRTUAL TABLE t USING fts5(body, tokenize='trigram')")
            _FTS5.append(True)
        except sqlite3.OperationalError:
            _FTS5.append(False)
        finally:
            conn.close()
    return _FTS5[0]


def _empty_texts(conn: sqlite3.Connection) -> None:
    """Empty the trigram index by dropping and making it again: deleting its rows would leave
    their pieces in its older segments until a merge (after `forget_user`, text that must be
    gone), while a dropped table's pages are freed (zeroed, with `secure_delete`)."""
    conn.execute("DROP TABLE IF EXISTS texts")
    conn.execute(_TEXTS_DDL)


def _pieces(text: str) -> set[str]:
    """The trigram index's pieces of `text`: every three characters in a row (FTS5's trigram
    tokenizer's tokens)."""
    return {text[i:i + 3] for i in range(len(text) - 2)}


def _piece_count(kind: str, piece: str) -> str:
    """The `counts` row of how many rows of `kind` hold `piece` (not an ordering's name)."""
    return f"~t|{kind}|{piece}"


def _quoted(piece: str) -> str:
    """`piece` as an FTS5 string (itself, whatever characters it holds)."""
    return '"' + piece.replace('"', '""') + '"'


def _table(name: str, desc: bool = False) -> tuple[str, str]:
    """(table, ORDER BY) of an ordering: orderings of `KEY_ORDERED` live in `kord`, ordered
    by their primary key (no second index to write: a new session is in dozens of them)."""
    order = "DESC" if desc else "ASC"
    if name.startswith(KEY_ORDERED):
        return "kord", f"key {order}"
    return "ord", f"score {order}, key {order}"


class SqliteIndex(ReadIndex):
    def __init__(self, path: str | os.PathLike[str], *, secure_delete: bool = False,
                 texts: bool | None = None) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        # The trigram index of `TEXT_KINDS` (FTS5): where this SQLite has it, unless told
        self.texts = fts5_available() if texts is None else texts
        # An encrypted log's index: deleted content is zeroed in the file, not left in free
        # pages (after `forget_user`, its rebuild deletes every row that held decrypted data).
        self._secure_delete = secure_delete
        self._lock = threading.RLock()
        self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        try:
            return self._open()
        except sqlite3.DatabaseError as exc:  # not a database / malformed: derived data, rebuild
            aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            log.warning("read index %s cannot be read (%s): moved to %s and rebuilt from the log",
                        self.path, exc, aside.name)
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    src.replace(Path(f"{aside}{suffix}"))
            return self._open()

    def _open(self) -> sqlite3.Connection:
        if not self.path.exists():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))  # 0600 before SQLite opens it
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: never corrupt; a crash may
            # lose the last transactions, and the cursor goes with them (they are folded again)
            # A checkpoint every 4,000 pages, not 1,000: a new session's commit writes ~50 pages
            # of a few hot ones, so a checkpoint (and its fsync) copies each of those once for
            # four times as many commits (creation -25 % here; the WAL stays under ~16 MiB)
            conn.execute("PRAGMA wal_autocheckpoint=4000")
            if self._secure_delete:
                conn.execute("PRAGMA secure_delete=ON")
            conn.executescript(_DDL)
            if self.texts:
                conn.execute(_TEXTS_DDL)
            conn.execute("SELECT count(*) FROM meta").fetchone()
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    # --- reading --------------------------------------------------------------------------

    def cursors(self) -> dict[int, int]:
        with self._lock:
            return {p: pos for p, pos in self._conn.execute("SELECT p, pos FROM cursor")}

    def cursors_and_purge(self) -> tuple[dict[int, int], str]:
        """One statement (one read transaction: the cursors and the mark agree)."""
        with self._lock:
            rows = self._conn.execute("SELECT p, pos FROM cursor UNION ALL "
                                      "SELECT -1, v FROM meta WHERE k = 'purged'").fetchall()
        return {p: pos for p, pos in rows if p >= 0}, next((str(v) for p, v in rows if p < 0), "")

    def get_many(self, kind: str, keys: list[str], partition: int | None = None) -> list[bytes | None]:
        if not keys:
            return []
        with self._lock:
            if len(keys) == 1:
                row = self._conn.execute("SELECT data FROM rows WHERE kind=? AND key=?", (kind, keys[0])).fetchone()
                return [row[0] if row is not None else None]
            found: dict[str, bytes] = {}
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                marks = ",".join("?" * len(chunk))
                found.update(self._conn.execute(
                    f"SELECT key, data FROM rows WHERE kind=? AND key IN ({marks})", (kind, *chunk)))
        return [found.get(k) for k in keys]

    def scan(self, kind: str) -> Iterator[tuple[str, bytes]]:
        with self._lock:
            rows = self._conn.execute("SELECT key, data FROM rows WHERE kind=?", (kind,)).fetchall()
        return iter(rows)

    def scan_chunks(self, kind: str, chunk: int = 5000) -> Iterator[list[tuple[str, bytes]]]:
        # By the primary key, from where the last chunk ended (no OFFSET to walk again)
        after: str | None = None
        while True:
            with self._lock:
                if after is None:
                    rows = self._conn.execute("SELECT key, data FROM rows WHERE kind=? ORDER BY key LIMIT ?",
                                              (kind, chunk)).fetchall()
                else:
                    rows = self._conn.execute("SELECT key, data FROM rows WHERE kind=? AND key>? ORDER BY key LIMIT ?",
                                              (kind, after, chunk)).fetchall()
            if not rows:
                return
            yield rows
            after = rows[-1][0]

    def page(self, ordering: str, *, desc: bool, offset: int, limit: int | None) -> list[Ranked]:
        table, order = _table(ordering, desc)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT key, score FROM {table} WHERE name=? ORDER BY {order} LIMIT ? OFFSET ?",
                (ordering, -1 if limit is None else limit, offset)).fetchall()
        return [Ranked(k, s) for k, s in rows]

    def page_rows(self, ordering: str, *, desc: bool, kind: str, offset: int = 0,
                  limit: int | None = None) -> list[tuple[Ranked, bytes]]:
        table, order = _table(ordering, desc)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT o.key, o.score, r.data FROM {table} o JOIN rows r ON r.kind=? AND r.key=o.key "
                f"WHERE o.name=? ORDER BY o.{order.replace(', ', ', o.')} LIMIT ? OFFSET ?",
                (kind, ordering, -1 if limit is None else limit, offset)).fetchall()
        return [(Ranked(k, s), data) for k, s, data in rows]

    def page_containing(self, ordering: str, *, desc: bool, kind: str, needle: bytes,
                        among: Sequence[str] = (), whole: bool = False) -> list[Ranked]:
        # One statement: the ordering's covering index joined to the rows' primary key, the
        # test in SQLite (instr on BLOBs compares bytes, as `in` does on the generic path);
        # `whole`, the kind's rows in their own order (one range of the primary key, no
        # probe each) and only the matches looked up in the ordering; with `among`, the
        # first's keys, each kept only if every other holds it too (a primary-key probe each,
        # in that order: CROSS JOIN fixes SQLite's loop order), then looked up in the rows
        # and the ordering.
        table, order = _table(ordering, desc)
        by = "o." + order.replace(", ", ", o.")
        with self._lock:
            if whole and not among:
                matching, args = self._matching(kind, needle)
                rows = self._conn.execute(
                    f"SELECT o.key, o.score FROM {matching} m CROSS JOIN {table} o ON o.name=? AND o.key=m.key "
                    f"ORDER BY {by}", (*args, ordering)).fetchall()
            elif not among:
                rows = self._conn.execute(
                    f"SELECT o.key, o.score FROM {table} o JOIN rows r ON r.kind=? AND r.key=o.key "
                    f"WHERE o.name=? AND instr(r.data, ?) > 0 ORDER BY {by}",
                    (kind, ordering, needle)).fetchall()
            else:
                narrow = "".join(f"CROSS JOIN {_table(other)[0]} t{i} ON t{i}.name=? AND t{i}.key=t.key "
                                 for i, other in enumerate(among[1:]))
                rows = self._conn.execute(
                    f"SELECT o.key, o.score FROM {_table(among[0])[0]} t {narrow}"
                    f"CROSS JOIN rows r ON r.kind=? AND r.key=t.key "
                    f"CROSS JOIN {table} o ON o.name=? AND o.key=t.key WHERE t.name=? AND instr(r.data, ?) > 0 "
                    f"ORDER BY {by}", (*among[1:], kind, ordering, among[0], needle)).fetchall()
        return [Ranked(k, s) for k, s in rows]

    def _matching(self, kind: str, needle: bytes) -> tuple[str, tuple[Any, ...]]:
        """(a subquery of the keys of `kind`'s rows that contain `needle`, its parameters).
        For a kind the trigram index holds and a needle of three characters or more: the
        rows that hold its two rarest pieces (how many rows hold each is counted as they are
        written, `_piece_count`), tested for the needle itself — a piece in most rows would
        make FTS5 read its long list for nothing, as a phrase of every piece does. Else every
        row of the kind tested (`instr` on the bytes, as `in`). (Called under the lock.)"""
        try:
            text = needle.decode()
        except UnicodeDecodeError:
            text = ""
        if self.texts and kind in TEXT_KINDS and len(text) >= 3 and "\x00" not in text:
            pieces = sorted(_pieces(text))[:500]  # (any of its pieces narrows: a long needle is not read whole)
            names = [_piece_count(kind, p) for p in pieces]
            held = dict(self._conn.execute(f"SELECT name, n FROM counts WHERE name IN ({','.join('?' * len(names))})",
                                           names).fetchall())
            counted = sorted((held.get(n, 0), p) for n, p in zip(names, pieces))
            if counted[0][0] <= 0:  # (a piece no row holds: nothing matches)
                return "(SELECT key FROM texts WHERE 0)", ()
            return ("(SELECT key FROM texts WHERE texts MATCH ? AND kind=? AND instr(body, ?) > 0)",
                    (" AND ".join(_quoted(p) for _, p in counted[:2]), kind, text))
        return "(SELECT key FROM rows WHERE kind=? AND instr(data, ?) > 0)", (kind, needle)

    def window_containing(self, ordering: str, *, desc: bool, kind: str, needle: bytes, offset: int,
                          limit: int | None, whole: bool = False) -> tuple[list[Ranked], int]:
        # `page_containing`'s statements, sorted, counted and cut to the page in SQLite (a
        # search that matches every memory hands back 20 rows, not all of them). `whole`:
        # the kind's matching rows (`_matching`: from the trigram index, or the rows tested
        # as they lie); up to `FEW_MATCHES` are all there is to place (scored in the
        # ordering, sorted here). More are counted; when they are dense enough that the page
        # is found within fewer rows of the ordering than there are matches, the ordering is
        # walked in order and the walk stops at the page's end (no sort), else the matches
        # are scored and sorted in SQLite.
        table, order = _table(ordering, desc)
        by = "o." + order.replace(", ", ", o.")
        walk = (f"SELECT o.key, o.score, 0 FROM {table} o JOIN rows r ON r.kind=? AND r.key=o.key "
                f"WHERE o.name=? AND instr(r.data, ?) > 0 ORDER BY {by} LIMIT ? OFFSET ?")
        page = (-1 if limit is None else limit, offset)
        with self._lock:
            if whole:
                matching, args = self._matching(kind, needle)
                keys = [k for (k,) in self._conn.execute(f"SELECT key FROM {matching} LIMIT ?",
                                                         (*args, FEW_MATCHES + 1))]
                if len(keys) <= FEW_MATCHES:  # (all of them, in one pass: scored and sorted here)
                    found = [Ranked(k, s) for k, s in zip(keys, self.scores(ordering, keys)) if s is not None]
                    found.sort(key=lambda r: (r.score, r.key), reverse=desc)
                    return (found[offset:] if limit is None else found[offset:offset + limit]), len(found)
                # (many: counted by testing the rows as they lie, which for a needle this common
                # costs less than the trigram index's position checks)
                (total,) = self._conn.execute("SELECT count(*) FROM rows WHERE kind=? AND instr(data, ?) > 0",
                                              (kind, needle)).fetchone()
                if total == 0 or offset >= total:
                    return [], total
                if limit is not None and (offset + limit) * self.count(ordering) < total * total:
                    rows = self._conn.execute(walk, (kind, ordering, needle, *page)).fetchall()
                else:
                    rows = self._conn.execute(
                        f"SELECT o.key, o.score, 0 FROM {matching} m CROSS JOIN {table} o ON o.name=? "
                        f"AND o.key=m.key ORDER BY {by} LIMIT ? OFFSET ?", (*args, ordering, *page)).fetchall()
            else:
                rows = self._conn.execute(walk.replace(", 0 FROM", ", COUNT(*) OVER () FROM"),
                                          (kind, ordering, needle, *page)).fetchall()
                if rows:
                    total = rows[0][2]
                elif offset > 0:  # (a page past the end: still the count)
                    return [], self.window_containing(ordering, desc=desc, kind=kind, needle=needle, offset=0,
                                                      limit=1)[1]
                else:
                    total = 0
        return [Ranked(k, s) for k, s, _ in rows], total

    def texts_held(self, kind: str) -> dict[str, str] | None:
        """What the trigram index holds of `kind`, by key, each entry found by its id (checks
        only: `index_differences` compares it with a fresh fold); None: it keeps none."""
        if not self.texts:
            return None
        with self._lock:
            rows = self._conn.execute("SELECT i.key, t.body FROM textids i JOIN texts t ON t.rowid = i.id "
                                      "WHERE i.kind=? AND t.kind=i.kind AND t.key=i.key", (kind,)).fetchall()
            (entries,) = self._conn.execute("SELECT count(*) FROM texts WHERE kind=?", (kind,)).fetchone()
            counted = {n[len(_piece_count(kind, "")):]: c for n, c in self._conn.execute(
                "SELECT name, n FROM counts WHERE substr(name, 1, ?) = ? AND n != 0",
                (len(_piece_count(kind, "")), _piece_count(kind, ""))).fetchall()}
        held = {k: b for k, b in rows}
        if entries != len(held):  # (an entry no id leads to: it would match searches)
            held["<entries without an id>"] = str(entries - len(held))
        pieces: dict[str, int] = {}
        for body in held.values():
            for piece in _pieces(body):
                pieces[piece] = pieces.get(piece, 0) + 1
        if pieces != counted:  # (a search picks its pieces by these counts)
            held["<pieces counted wrong>"] = str(sorted(set(pieces.items()) ^ set(counted.items()))[:5])
        return held

    def scores(self, ordering: str, keys: list[str]) -> list[float | None]:
        found: dict[str, float] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                found.update(self._conn.execute(
                    f"SELECT key, score FROM {_table(ordering)[0]} WHERE name=? "
                    f"AND key IN ({','.join('?' * len(chunk))})",
                    (ordering, *chunk)))
        return [found.get(k) for k in keys]

    def between(self, ordering: str, low: float, high: float, *, desc: bool, offset: int,
                limit: int | None) -> list[Ranked]:
        table, order = _table(ordering, desc)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT key, score FROM {table} WHERE name=? AND score >= ? AND score <= ? "
                f"ORDER BY {order} LIMIT ? OFFSET ?",
                (ordering, low, high, -1 if limit is None else limit, offset)).fetchall()
        return [Ranked(k, s) for k, s in rows]

    def orderings(self, prefix: str) -> list[str]:
        with self._lock:
            names = self._conn.execute("SELECT DISTINCT name FROM ord WHERE substr(name, 1, ?) = ? UNION "
                                       "SELECT DISTINCT name FROM kord WHERE substr(name, 1, ?) = ?",
                                       (len(prefix), prefix) * 2).fetchall()
        return sorted(n for (n,) in names)

    def count(self, ordering: str) -> int:
        with self._lock:
            row = self._conn.execute("SELECT n FROM counts WHERE name=?", (ordering,)).fetchone()
        return int(row[0]) if row is not None else 0

    def meta(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._conn.execute("SELECT k, v FROM meta"))

    # --- writing --------------------------------------------------------------------------

    def begin(self, partition: int) -> IndexTxn:
        self._lock.acquire()
        try:
            self._conn.execute("BEGIN IMMEDIATE")  # the writer's lock: other processes wait here
        except BaseException:
            self._lock.release()
            raise
        return _SqliteTxn(self, partition)

    def reset(self, schema: int) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for table in _TABLES:
                    self._conn.execute(f"DELETE FROM {table}")
                if self.texts:
                    _empty_texts(self._conn)
                self._conn.execute("INSERT INTO meta VALUES ('schema', ?)", (str(schema),))
                self._drop_cached()  # (under the writer lock: nobody folds meanwhile)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def claim_schema(self, schema: int) -> str:
        with self._lock:
            self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(schema),))
            row = self._conn.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
        return str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # Cached rows (stream snapshots) are files beside the database, not rows in it: a
    # 1 MiB blob in SQLite is a chain of 256 overflow pages, read one system call each
    # (3-4 ms from a new connection); a file is one read (0.2 ms).
    def _cached_path(self, kind: str, key: str) -> Path:
        name = hashlib.sha256(key.encode()).hexdigest()[:40]
        return self.path.with_name(f"{self.path.name}.cache") / kind / name

    def get_cached(self, kind: str, key: str, partition: int | None = None) -> bytes | None:
        # The key is stored with the data: a file is only the key's (hash collisions, a
        # file put there by something else). The rest is one read of its known size into
        # one allocation: a snapshot is megabytes, and a buffered read to the end grows and
        # joins chunks (copying it again, ~1 ms of a cold read's page faults per MiB).
        head = key.encode() + b"\n"
        try:
            fd = os.open(self._cached_path(kind, key), os.O_RDONLY)
        except OSError:
            return None
        try:
            if os.pread(fd, len(head), 0) != head:
                return None
            size = os.fstat(fd).st_size - len(head)
            data = os.pread(fd, size, len(head)) if size > 0 else b""
            return data if len(data) == size else None  # (cut short under us: fold from the stream)
        except OSError:
            return None
        finally:
            os.close(fd)

    def put_cached(self, kind: str, key: str, data: bytes, partition: int | None = None) -> bool:
        path = self._cached_path(kind, key)
        try:
            for folder in (path.parent.parent, path.parent):  # each 0700 (mkdir's parents would not be)
                folder.mkdir(mode=0o700, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, key.encode() + b"\n" + data)
            finally:
                os.close(fd)
            os.replace(tmp, path)  # readers see the old file or the new one, never half of one
            return True
        except OSError as exc:
            log.debug("read index %s: cached row %s/%s not kept: %s", self.path, kind, key, exc)
            return False

    def _drop_cached(self) -> None:
        shutil.rmtree(self.path.with_name(f"{self.path.name}.cache"), ignore_errors=True)

    # --- a rebuild beside the live index -------------------------------------------------------

    def shadow(self) -> SqliteIndex:
        path = self.path.with_name(f"{self.path.name}.rebuild")
        for suffix in ("", "-wal", "-shm"):  # what a rebuild that died left
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return SqliteIndex(path, secure_delete=self._secure_delete, texts=self.texts)

    def scrub(self) -> None:
        """Checkpoint the write-ahead log into the database and truncate it: the WAL still
        holds the pages as they were before the last transactions (with `secure_delete`, the
        database's own free pages are already zeroed). A reader holding an old snapshot
        makes SQLite stop short; the next scrub or checkpoint finishes it."""
        with self._lock:
            busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning("read index %s: a reader kept the write-ahead log from being emptied; "
                        "it is emptied at the next checkpoint", self.path)

    def adopt(self, shadow: ReadIndex, finish: Callable[[], object]) -> bool:
        """Copy the shadow's tables over this index's in one transaction. Under `BEGIN
        IMMEDIATE` no other process commits here, so `finish` brings the shadow to the log's
        end and nothing is folded into this index meanwhile; readers (WAL) see the old
        content until the commit, the new one after. (Copied row by row through the shadow's
        own connection: an ATTACHed shadow would be write-locked by this transaction too.)"""
        assert isinstance(shadow, SqliteIndex)
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                finish()
                with shadow._lock:
                    for table in _TABLES:
                        conn.execute(f"DELETE FROM {table}")
                        rows = shadow._conn.execute(f"SELECT * FROM {table}")
                        marks = ",".join("?" * len(rows.description))
                        while batch := rows.fetchmany(5000):
                            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", batch)
                    if self.texts:
                        _empty_texts(conn)
                        rows = shadow._conn.execute("SELECT rowid, kind, key, body FROM texts")
                        while batch := rows.fetchmany(5000):
                            conn.executemany("INSERT INTO texts (rowid, kind, key, body) VALUES (?, ?, ?, ?)",
                                             batch)
                self._drop_cached()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return True

    def discard(self) -> None:
        self.close()
        self._drop_cached()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _SqliteTxn(IndexTxn):
    """Holds the index's lock and SQLite's write lock from `begin` to commit/rollback."""

    def __init__(self, index: SqliteIndex, partition: int) -> None:
        self._index = index
        self._conn = index._conn
        self.partition = partition
        row = self._conn.execute("SELECT pos, seq FROM cursor WHERE p=?", (partition,)).fetchone()
        self.base, self._seq = (int(row[0]), int(row[1])) if row is not None else (0, 0)
        self._done = False
        # Ordering changes are kept and written at the end in batches (`_flush`): a new
        # session is in dozens of orderings, and one statement per entry and per count was
        # most of its creation. Kept in order (a key dropped then added again stays added).
        self._ops: list[tuple[str, tuple[Any, ...]]] = []
        self._counts: dict[str, int] = {}

    def get(self, kind: str, key: str) -> bytes | None:
        row = self._conn.execute("SELECT data FROM rows WHERE kind=? AND key=?", (kind, key)).fetchone()
        return row[0] if row is not None else None

    def keys(self, ordering: str) -> list[str]:
        self._flush()
        table, order = _table(ordering)
        return [k for (k,) in self._conn.execute(f"SELECT key FROM {table} WHERE name=? ORDER BY {order}", (ordering,))]

    def put(self, kind: str, key: str, data: bytes, old: Iterable[Member], new: Iterable[Member]) -> None:
        self._conn.execute("INSERT OR REPLACE INTO rows VALUES (?, ?, ?)", (kind, key, data))
        if kind in TEXT_KINDS and self._index.texts:
            self._put_text(kind, key, data.decode("utf-8", "replace"))
        self.reorder(key, old, new)

    def delete(self, kind: str, key: str, old: Iterable[Member]) -> None:
        self._conn.execute("DELETE FROM rows WHERE kind=? AND key=?", (kind, key))
        if kind in TEXT_KINDS and self._index.texts:
            self._put_text(kind, key, None)
        self.reorder(key, old, ())

    def _put_text(self, kind: str, key: str, text: str | None) -> None:
        """The row's text in the trigram index (None: out of it), and how many rows hold each
        of its pieces (`_piece_count`, kept with the orderings' counts)."""
        got = self._conn.execute("SELECT t.rowid, t.body FROM textids i JOIN texts t ON t.rowid = i.id "
                                 "WHERE i.kind=? AND i.key=?", (kind, key)).fetchone()
        was = _pieces(got[1]) if got is not None else set()
        now = _pieces(text) if text is not None else set()
        counts = self._counts
        for piece, change in [*((p, -1) for p in was - now), *((p, 1) for p in now - was)]:
            name = _piece_count(kind, piece)
            counts[name] = counts.get(name, 0) + change
        if got is not None:
            self._conn.execute("DELETE FROM texts WHERE rowid=?", (got[0],))
            if text is None:
                self._conn.execute("DELETE FROM textids WHERE kind=? AND key=?", (kind, key))
                return
        if text is None:
            return
        cur = self._conn.execute("INSERT INTO texts (kind, key, body) VALUES (?, ?, ?)", (kind, key, text))
        self._conn.execute("INSERT OR REPLACE INTO textids VALUES (?, ?, ?)", (kind, key, cur.lastrowid))

    def reorder(self, key: str, old: Iterable[Member], new: Iterable[Member]) -> None:
        before = dict(old)
        after = dict(new)
        ops, counts = self._ops, self._counts
        for name in before.keys() - after.keys():
            ops.append(("KD" if name.startswith(KEY_ORDERED) else "D", (name, key)))
            counts[name] = counts.get(name, 0) - 1
        for name, score in after.items():
            if name not in before:
                ops.append(("KI" if name.startswith(KEY_ORDERED) else "I", (name, key, score)))
                counts[name] = counts.get(name, 0) + 1
            elif before[name] != score:
                ops.append(("KU" if name.startswith(KEY_ORDERED) else "U", (score, name, key)))

    _SQL = {"D": "DELETE FROM ord WHERE name=? AND key=?",
            "I": "INSERT OR REPLACE INTO ord VALUES (?, ?, ?)",
            "U": "UPDATE ord SET score=? WHERE name=? AND key=?",
            "KD": "DELETE FROM kord WHERE name=? AND key=?",
            "KI": "INSERT OR REPLACE INTO kord VALUES (?, ?, ?)",
            "KU": "UPDATE kord SET score=? WHERE name=? AND key=?"}

    def _flush(self) -> None:
        """Write the kept ordering changes: each run of one kind of change in one call."""
        ops, self._ops = self._ops, []
        at = 0
        while at < len(ops):
            op = ops[at][0]
            end = at
            while end < len(ops) and ops[end][0] == op:
                end += 1
            self._conn.executemany(self._SQL[op], [args for _, args in ops[at:end]])
            at = end
        counts, self._counts = self._counts, {}
        self._conn.executemany(
            "INSERT INTO counts VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET n = n + excluded.n",
            [(name, n) for name, n in counts.items() if n])

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def commit(self, upto: int) -> bool:
        try:
            self._flush()
            self._conn.execute("INSERT OR REPLACE INTO cursor VALUES (?, ?, ?)", (self.partition, upto, self._seq))
            self._conn.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise
        self._finish()
        return True

    def rollback(self) -> None:
        if self._done:
            return
        try:
            self._conn.execute("ROLLBACK")
        finally:
            self._finish()

    def _finish(self) -> None:
        if not self._done:
            self._done = True
            self._index._lock.release()
