"""`RedisIndex`: the read index of a Redis log, kept in the same Redis beside each partition.

Per partition `p` (hash tag `T` = the log's `el:{el:<p>}`), for index schema `S`:

    T:rm<S>:cur           "<position> <seq>": folded up to; the insertion counter
    T:rm<S>:r:<kind>      hash: key -> row
    T:rm<S>:o:<ordering>  sorted set: key by score
    T:rm<S>:meta          hash: schema, ...

Every key of a partition's index carries the partition's hash tag, so on Redis Cluster an
update is one Lua call on one node — it checks that the cursor is still where the updater
read it and writes the rows, the orderings and the new cursor together (an optimistic
transaction: a second process that folded the same events first makes it a no-op). A
schema bump uses new key names (`rm<S+1>`), so an old index is never read as a new one; the
old one stays for the previous version's processes until `eventlog reindex` drops it
(`prune_stale`; `eventlog doctor` and each opening process report it).
Queries across partitions (a page of sessions sorted by time) merge the partitions' sorted
sets, reading at most offset + limit from each.
"""

from __future__ import annotations

import heapq
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from projections.index.base import INDEX_SCHEMA, IndexTxn, Member, Ranked, ReadIndex

# ARGV: expected position, new "<position> <seq>", then ops; KEYS[1] is the cursor key.
#   H ki field value   (HSET)        D ki field          (HDEL)
#   Z ki score member  (ZADD)        R ki member         (ZREM)
_COMMIT = """
local cur = redis.call('GET', KEYS[1])
local pos = 0
if cur then pos = tonumber(string.match(cur, '^(%d+)')) end
if pos ~= tonumber(ARGV[1]) then return 0 end
local i = 3
local n = #ARGV
while i <= n do
  local op = ARGV[i]
  local k = KEYS[tonumber(ARGV[i + 1])]
  if op == 'H' then redis.call('HSET', k, ARGV[i + 2], ARGV[i + 3]); i = i + 4
  elseif op == 'D' then redis.call('HDEL', k, ARGV[i + 2]); i = i + 3
  elseif op == 'Z' then redis.call('ZADD', k, ARGV[i + 2], ARGV[i + 3]); i = i + 4
  elseif op == 'R' then redis.call('ZREM', k, ARGV[i + 2]); i = i + 3
  else return redis.error_reply('bad op ' .. op) end
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


# A rebuild's swap, per partition. KEYS[1]: the live cursor; then n shadow keys, the n live
# names they take, and the live keys the shadow does not have. ARGV: the live cursor as the
# rebuild last read it ('' for none), n. The cursor check makes it one atomic step between
# two commits of that partition (every commit moves the cursor): 0 if one got in between.
_ADOPT = """
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[2])
for i = 2, #KEYS do
  if i > 1 + 2 * n then redis.call('DEL', KEYS[i]) end
end
for i = 2, 1 + n do redis.call('RENAME', KEYS[i], KEYS[i + n]) end
return 1
"""


# A substring search of one partition's rows of a kind (KEYS[1], a hash) among the keys an
# ordering (KEYS[2]) holds: (key, score) pairs of the matches, in no order. `plain` find:
# the needle is bytes to look for, not a pattern.
# ZMSCORE for any Redis (it came in 6.2): each ARGV's score in KEYS[1], or nil.
_SCORES = """
local out = {}
for i, k in ipairs(ARGV) do
  out[i] = redis.call('ZSCORE', KEYS[1], k) or false
end
return out
"""

_CONTAINING = """
local rows = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #rows, 2 do
  if string.find(rows[i + 1], ARGV[1], 1, true) then
    local score = redis.call('ZSCORE', KEYS[2], rows[i])
    if score then
      out[#out + 1] = rows[i]
      out[#out + 1] = score
    end
  end
end
return out
"""

# A name search narrowed by trigrams (`page_containing`'s `among`), in Redis: the first
# trigram's keys (KEYS[3]) that every other (KEYS[4..]) holds, whose row of the kind (KEYS[1])
# contains the needle, with their scores in the ordering (KEYS[2]). A first trigram larger
# than ARGV[2] is left to the client (false), so one call never blocks the server for long.
_AMONG = """
if redis.call('ZCARD', KEYS[3]) > tonumber(ARGV[2]) then
  return false
end
local out = {}
for _, k in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  local keep = true
  for j = 4, #KEYS do
    if not redis.call('ZSCORE', KEYS[j], k) then
      keep = false
      break
    end
  end
  if keep then
    local row = redis.call('HGET', KEYS[1], k)
    if row and string.find(row, ARGV[1], 1, true) then
      local score = redis.call('ZSCORE', KEYS[2], k)
      if score then
        out[#out + 1] = k
        out[#out + 1] = score
      end
    end
  end
end
return out
"""
# A search of a whole kind, windowed (`window_containing`), in Redis: the kind's rows (KEYS[1])
# that contain the needle (ARGV[1]) counted; up to ARGV[4] of them are scored in the ordering
# (KEYS[2]) and all handed back (the client sorts them); more, and the ordering is walked in
# its order (descending: ARGV[3] == '1') until the first ARGV[2] matches are found, so only
# those cross the network. Returns {"few" or "many", total, key, score, key, score, ...}.
_WINDOW = """
local rows = redis.call('HGETALL', KEYS[1])
local hit, total = {}, 0
for i = 1, #rows, 2 do
  if string.find(rows[i + 1], ARGV[1], 1, true) then
    hit[rows[i]] = true
    total = total + 1
  end
end
local want = tonumber(ARGV[2])
if want < 0 or total <= tonumber(ARGV[4]) then
  local out = {'few', total}
  for k, _ in pairs(hit) do
    local score = redis.call('ZSCORE', KEYS[2], k)
    if score then
      out[#out + 1] = k
      out[#out + 1] = score
    end
  end
  return out
end
local out, n, start = {'many', total}, 0, 0
while n < want do
  local chunk
  if ARGV[3] == '1' then
    chunk = redis.call('ZREVRANGE', KEYS[2], start, start + 999, 'WITHSCORES')
  else
    chunk = redis.call('ZRANGE', KEYS[2], start, start + 999, 'WITHSCORES')
  end
  if #chunk == 0 then
    break
  end
  for i = 1, #chunk, 2 do
    if hit[chunk[i]] then
      out[#out + 1] = chunk[i]
      out[#out + 1] = chunk[i + 1]
      n = n + 1
      if n >= want then
        break
      end
    end
  end
  start = start + 1000
end
return out
"""
FEW_IN_SCRIPT = 2_000  # a windowed search with this many matches or fewer hands them all back

# One slice of a search of a kind's rows (KEYS[1]) too many for one script: HSCAN from cursor
# ARGV[2], COUNT ARGV[3], the keys whose row contains ARGV[1]. Returns {next cursor, key, ...}.
_SLICE = """
local got = redis.call('HSCAN', KEYS[1], ARGV[2], 'COUNT', ARGV[3])
local out = {got[1]}
local kv = got[2]
for i = 1, #kv, 2 do
  if string.find(kv[i + 1], ARGV[1], 1, true) then
    out[#out + 1] = kv[i]
  end
end
return out
"""
SEARCH_IN_SCRIPT = 50_000  # rows a search tests in one script at most (~25 ms of the server's time)
SEARCH_SLICE = 5_000  # rows per slice beyond that

AMONG_IN_SCRIPT = 20_000  # candidates a search script tests at most (~10 ms of the server's time)


class RedisIndex(ReadIndex):
    def __init__(self, store: Any, *, suffix: str = "", base: str = "") -> None:
        self._base = base  # which index of the log: "" (as stored), "d" (decrypted: an encrypted log's)
        self._suffix = suffix  # a shadow's namespace: rm<schema><base><suffix>
        self._store = store
        self.client = store.client
        self.partitions = int(store.partitions)
        self.where = f"{store.url} (rm{INDEX_SCHEMA}{base})"
        self._script = self.client.register_script(_COMMIT)
        self._containing = self.client.register_script(_CONTAINING)
        self._scores = self.client.register_script(_SCORES)
        self._among = self.client.register_script(_AMONG)
        self._window = self.client.register_script(_WINDOW)
        self._slice = self.client.register_script(_SLICE)
        # Per partition, what this process's last commit left: (position, seq) and the rows it
        # read or wrote then. Valid while nobody else commits — which the commit script checks
        # (the cursor must still be that position), so a transaction that follows this
        # process's own last one needs no round trip to begin nor to re-read its rows.
        self._known: dict[int, tuple[int, int]] = {}
        self._rows: dict[int, dict[tuple[str, str], bytes | None]] = {}
        self._lock = threading.Lock()
        self._log_end: dict[int, int] = {}

    def note_log_end(self, offsets: dict[int, int]) -> None:
        self._log_end = dict(offsets)

    def get_at_log_end(self, kind: str, key: str,
                       partition: int | None = None) -> tuple[dict[int, int], bytes | None] | None:
        last_and = getattr(self._store, "last_position_and", None)
        if last_and is None or (partition is None and self.partitions != 1):
            return None
        row = f"{self._ns(partition or 0)}:r:{kind}"
        cursor, (values,) = last_and(lambda pipe: pipe.hmget(row, [key]))
        value: bytes | None = values[0]
        return dict(cursor.offsets), value

    def _current_rows(self, partition: int) -> dict[tuple[str, str], bytes | None] | None:
        """The rows this process knows for `partition`, if nothing can have changed them: the
        log ends where this process's last commit left the index (nobody else can have
        folded anything newer)."""
        known = self._known.get(partition)
        if known is None or self._log_end.get(partition, 0) != known[0]:
            return None
        return self._rows.get(partition)

    def _ns(self, partition: int) -> str:
        return f"{self._store._tag(partition)}:rm{INDEX_SCHEMA}{self._base}{self._suffix}"

    def _call(self, fn: Any, *args: Any) -> Any:
        return self._store._call(fn, *args)  # the store's error mapping (StoreUnavailable, redacted)

    def partition_of(self, stream: str) -> int:
        return int(self._store.partition_of(stream))

    # --- reading --------------------------------------------------------------------------

    def cursors(self) -> dict[int, int]:
        keys = [f"{self._ns(p)}:cur" for p in range(self.partitions)]
        if self.partitions == 1:
            values = [self._call(self.client.get, keys[0])]
        else:
            values = [self._call(self.client.get, k) for k in keys]
        out: dict[int, int] = {}
        for p, value in enumerate(values):
            if value is not None:
                out[p] = int(value.split()[0])
        return out

    def cursors_and_purge(self) -> tuple[dict[int, int], str]:
        """One MGET on a single partition: the mark is also a key of its own beside the
        cursor (see `set_meta`), so this is one plain command, which the event-loop bridge
        runs on redis.asyncio like every other."""
        if self.partitions != 1:
            return super().cursors_and_purge()
        ns = self._ns(0)
        cur, purged = self._call(self.client.mget, f"{ns}:cur", f"{ns}:purged")
        return ({0: int(cur.split()[0])} if cur is not None else {}), (purged.decode() if purged else "")

    def get_many(self, kind: str, keys: list[str], partition: int | None = None) -> list[bytes | None]:
        if not keys:
            return []
        if partition is not None or self.partitions == 1:
            p = 0 if partition is None else partition
            with self._lock:
                rows = self._current_rows(p)
                if rows is not None and all((kind, k) in rows for k in keys):
                    return [rows[(kind, k)] for k in keys]
        parts = range(self.partitions) if partition is None else (partition,)
        found: list[bytes | None] = [None] * len(keys)
        for p in parts:
            values = self._call(self.client.hmget, f"{self._ns(p)}:r:{kind}", keys)
            for i, v in enumerate(values):
                if v is not None:
                    found[i] = v
        return found

    def scan(self, kind: str) -> Iterator[tuple[str, bytes]]:
        rows: list[tuple[str, bytes]] = []
        for p in range(self.partitions):
            rows.extend((k.decode(), v) for k, v in self._call(self.client.hgetall, f"{self._ns(p)}:r:{kind}").items())
        return iter(rows)

    def scan_chunks(self, kind: str, chunk: int = 5000) -> Iterator[list[tuple[str, bytes]]]:
        # HSCAN may return a field twice (the hash can be rehashed between calls): the keys
        # seen are kept to drop the repeats, a few bytes each instead of every row at once
        for p in range(self.partitions):
            name = f"{self._ns(p)}:r:{kind}"
            seen: set[bytes] = set()
            cursor = 0
            while True:
                cursor, got = self._call(self.client.hscan, name, cursor, None, chunk)
                rows = [(k.decode(), v) for k, v in got.items() if k not in seen]
                seen.update(got)
                if rows:
                    yield rows
                if not cursor:
                    break

    def page(self, ordering: str, *, desc: bool, offset: int, limit: int | None) -> list[Ranked]:
        stop = -1 if limit is None else offset + limit - 1
        start = offset if self.partitions == 1 else 0  # (else each partition's first offset + limit, merged)
        fn = self.client.zrevrange if desc else self.client.zrange
        runs = []
        for p in range(self.partitions):
            got = self._call(lambda k: fn(k, start, stop, withscores=True), f"{self._ns(p)}:o:{ordering}")
            runs.append([Ranked(k.decode(), float(s)) for k, s in got])
        if self.partitions == 1:
            return runs[0]
        merged = list(heapq.merge(*runs, key=lambda r: (r.score, r.key), reverse=desc))
        return merged[offset:] if limit is None else merged[offset:offset + limit]

    def between(self, ordering: str, low: float, high: float, *, desc: bool, offset: int,
                limit: int | None) -> list[Ranked]:
        start = offset if self.partitions == 1 else 0  # (as `page`: merged across partitions)
        num = None if limit is None else (offset - start) + limit
        runs = []
        for p in range(self.partitions):
            if desc:
                got = self._call(lambda k: self.client.zrevrangebyscore(
                    k, high, low, start=start if num is not None else None, num=num, withscores=True),
                    f"{self._ns(p)}:o:{ordering}")
            else:
                got = self._call(lambda k: self.client.zrangebyscore(
                    k, low, high, start=start if num is not None else None, num=num, withscores=True),
                    f"{self._ns(p)}:o:{ordering}")
            runs.append([Ranked(k.decode(), float(s)) for k, s in got])
        if self.partitions == 1:
            return runs[0] if num is not None or not offset else runs[0][offset:]
        merged = list(heapq.merge(*runs, key=lambda r: (r.score, r.key), reverse=desc))
        return merged[offset:] if limit is None else merged[offset:offset + limit]

    def page_containing(self, ordering: str, *, desc: bool, kind: str, needle: bytes,
                        among: Sequence[str] = (), whole: bool = False) -> list[Ranked]:
        """Where the ordering holds a quarter of the kind's rows or more (a name search of
        all sessions, or of an agent's that has most), the test runs in Redis: one script per
        partition searches its rows of `kind` and scores the matches in the ordering, so only
        the matches cross the network, not every key and row (a partition with more than
        `SEARCH_IN_SCRIPT` rows is tested in slices, so no call holds the server for long). A
        smaller ordering walks its own keys and their rows, as the generic version does."""
        if among:  # the candidates narrowed, tested and scored in one script per partition
            found: list[Ranked] = []
            for p in range(self.partitions):
                ns = self._ns(p)
                got = self._call(self._among, [f"{ns}:r:{kind}", f"{ns}:o:{ordering}",
                                               *(f"{ns}:o:{a}" for a in among)], [needle, AMONG_IN_SCRIPT])
                if got is None:  # (too many for one script: read the candidates here)
                    return super().page_containing(ordering, desc=desc, kind=kind, needle=needle, among=among)
                found += [Ranked(got[i].decode(), float(got[i + 1])) for i in range(0, len(got), 2)]
            found.sort(key=lambda r: (r.score, r.key), reverse=desc)
            return found
        if not needle:
            return super().page_containing(ordering, desc=desc, kind=kind, needle=needle)
        held = [int(self._call(self.client.hlen, f"{self._ns(p)}:r:{kind}")) for p in range(self.partitions)]
        if not whole and self.count(ordering) * 4 < sum(held):
            return super().page_containing(ordering, desc=desc, kind=kind, needle=needle)
        out: list[Ranked] = []
        for p in range(self.partitions):
            ns = self._ns(p)
            if held[p] > SEARCH_IN_SCRIPT:  # (too many rows for one script: tested a slice at a time)
                out += self._sliced(p, ordering, kind, needle, desc)
                continue
            got = self._call(self._containing, [f"{ns}:r:{kind}", f"{ns}:o:{ordering}"], [needle])
            out += [Ranked(got[i].decode(), float(got[i + 1])) for i in range(0, len(got), 2)]
        out.sort(key=lambda r: (r.score, r.key), reverse=desc)
        return out

    def window_containing(self, ordering: str, *, desc: bool, kind: str, needle: bytes, offset: int,
                          limit: int | None, whole: bool = False) -> tuple[list[Ranked], int]:
        """A search of a whole kind (all memories) runs in Redis, one script per partition:
        each counts its matches and hands back only the first `offset + limit` of them in
        the ordering's order (or all of them, when few), which are merged here."""
        if not needle or not whole:
            return super().window_containing(ordering, desc=desc, kind=kind, needle=needle, offset=offset,
                                             limit=limit, whole=whole)
        want = -1 if limit is None else offset + limit
        runs: list[list[Ranked]] = []
        total = 0
        for p in range(self.partitions):
            ns = self._ns(p)
            if int(self._call(self.client.hlen, f"{ns}:r:{kind}")) > SEARCH_IN_SCRIPT:
                found = self._sliced(p, ordering, kind, needle, desc)
                runs.append(found)
                total += len(found)
                continue
            got = self._call(self._window, [f"{ns}:r:{kind}", f"{ns}:o:{ordering}"],
                             [needle, want, "1" if desc else "0", FEW_IN_SCRIPT])
            found = [Ranked(got[i].decode(), float(got[i + 1])) for i in range(2, len(got), 2)]
            if got[0] == b"few":  # (all of them, unordered: placed here)
                found.sort(key=lambda r: (r.score, r.key), reverse=desc)
                total += len(found)
            else:
                total += int(got[1])
            runs.append(found)
        merged = runs[0] if len(runs) == 1 else list(heapq.merge(*runs, key=lambda r: (r.score, r.key), reverse=desc))
        return (merged[offset:] if limit is None else merged[offset:offset + limit]), total

    def _sliced(self, p: int, ordering: str, kind: str, needle: bytes, desc: bool) -> list[Ranked]:
        """Partition `p`'s rows of `kind` that contain `needle`, placed in `ordering`, tested
        `SEARCH_SLICE` at a time (one short script each) so that no call holds the server
        for long: a kind too large for one script. (HSCAN may hand a key back twice.)"""
        ns, cursor, keys = self._ns(p), b"0", {}
        while True:
            got = self._call(self._slice, [f"{ns}:r:{kind}"], [needle, cursor, SEARCH_SLICE])
            keys.update(dict.fromkeys(k.decode() for k in got[1:]))
            cursor = got[0]
            if cursor in (b"0", 0, "0"):
                break
        order = list(keys)
        found = [Ranked(k, s) for k, s in zip(order, self._scores_in(p, ordering, order)) if s is not None]
        found.sort(key=lambda r: (r.score, r.key), reverse=desc)
        return found

    def _scores_in(self, p: int, ordering: str, keys: list[str]) -> list[float | None]:
        out: list[float | None] = []
        for at in range(0, len(keys), 5000):
            got = self._call(self._scores, [f"{self._ns(p)}:o:{ordering}"], keys[at:at + 5000])
            out += [float(s) if s is not None else None for s in got]
        return out

    def scores(self, ordering: str, keys: list[str]) -> list[float | None]:
        found: list[float | None] = [None] * len(keys)
        if not keys:
            return found
        for p in range(self.partitions):
            got = self._call(self._scores, [f"{self._ns(p)}:o:{ordering}"], keys)
            for i, score in enumerate(got):
                if score is not None:
                    found[i] = float(score)
        return found

    def orderings(self, prefix: str) -> list[str]:
        names: set[str] = set()
        for p in range(self.partitions):
            base = f"{self._ns(p)}:o:"
            pattern = "".join("\\" + c if c in "*?[]\\^" else c for c in base + prefix) + "*"
            keys = self._call(lambda m: list(self.client.scan_iter(match=m, count=1000)), pattern)
            names.update(k.decode()[len(base):] for k in keys)
        return sorted(names)

    def count(self, ordering: str) -> int:
        return sum(int(self._call(self.client.zcard, f"{self._ns(p)}:o:{ordering}")) for p in range(self.partitions))

    def counts(self, orderings: Sequence[str]) -> list[int]:
        # One pipeline for every partition (a name search counts each of its needle's trigrams)
        keys = [f"{self._ns(p)}:o:{o}" for o in orderings for p in range(self.partitions)]

        def zcards() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.zcard(key)
            return pipe.execute()  # type: ignore[no-any-return]

        got = [int(n) for n in self._call(zcards)] if keys else []
        return [sum(got[i * self.partitions:(i + 1) * self.partitions]) for i in range(len(orderings))]

    def meta(self) -> dict[str, Any]:
        raw = self._call(self.client.hgetall, f"{self._ns(0)}:meta")
        return {k.decode(): v.decode() for k, v in raw.items()}

    def claim_schema(self, schema: int) -> str:
        key = f"{self._ns(0)}:meta"
        self._call(self.client.hsetnx, key, "schema", str(schema))
        value = self._call(self.client.hget, key, "schema")
        return value.decode() if value is not None else ""

    def set_meta(self, key: str, value: str) -> None:
        self._call(self.client.hset, f"{self._ns(0)}:meta", key, value)
        if key == "purged":  # (and a key of its own, read with the cursor: cursors_and_purge)
            self._call(self.client.set, f"{self._ns(0)}:purged", value)

    # --- writing --------------------------------------------------------------------------

    def get_cached(self, kind: str, key: str, partition: int | None = None) -> bytes | None:
        value: bytes | None = self._call(self.client.hget, f"{self._ns(partition or 0)}:c:{kind}", key)
        return value

    def put_cached(self, kind: str, key: str, data: bytes, partition: int | None = None) -> bool:
        self._call(self.client.hset, f"{self._ns(partition or 0)}:c:{kind}", key, data)
        return True

    def begin(self, partition: int) -> IndexTxn:
        return _RedisTxn(self, partition)

    # --- a rebuild beside the live index -------------------------------------------------------

    def shadow(self) -> RedisIndex:
        shadow = RedisIndex(self._store, base=self._base, suffix=f"x{os.getpid()}")
        shadow.discard()  # what a rebuild that died left
        return shadow

    def _keys_of(self, partition: int) -> list[str]:
        pattern = f"{self._ns(partition)}:*"
        return [k.decode() for k in self._call(lambda: list(self.client.scan_iter(match=pattern, count=1000)))]

    def adopt(self, shadow: ReadIndex, finish: Callable[[], object]) -> bool:
        """Per partition, one script renames the shadow's keys over the live ones and deletes
        the live keys it has no counterpart for — if no commit got in since the live cursor
        was read; else `finish` again and retry that partition. (A page across partitions may
        meet one swapped and one not yet: each is whole.)"""
        assert isinstance(shadow, RedisIndex)
        script = self.client.register_script(_ADOPT)
        for p in range(self.partitions):
            for _ in range(100):
                live_cursor = self._call(self.client.get, f"{self._ns(p)}:cur")
                finish()
                theirs = shadow._keys_of(p)
                live_ns, shadow_ns = self._ns(p), shadow._ns(p)
                targets = [live_ns + k[len(shadow_ns):] for k in theirs]
                drop = sorted(set(self._keys_of(p)) - set(targets))
                keys = [f"{live_ns}:cur", *theirs, *targets, *drop]
                args = [live_cursor or b"", len(theirs)]
                if self._call(lambda k=keys, a=args: script(keys=k, args=a)):
                    break
            else:
                raise RuntimeError(f"read index {self.where}: partition {p} kept moving during the rebuild")
        with self._lock:
            self._known.clear()
            self._rows.clear()
        return True

    # --- indexes of earlier schemas ------------------------------------------------------------

    def stale_schemas(self) -> list[int]:
        """Earlier index schemas whose keys are still in Redis. A schema bump moves the index
        to new key names and rebuilds it there; the old index is left for processes of the
        previous version still running (a rolling upgrade) and dropped by `prune_stale`
        (`eventlog reindex`), never by a process merely opening the log. One EXISTS per
        partition, over every earlier schema's cursor and meta."""
        found: set[int] = set()
        for p in range(self.partitions):
            tag = self._store._tag(p)
            for schema in range(1, INDEX_SCHEMA):
                ns = f"{tag}:rm{schema}{self._base}"
                if self._call(self.client.exists, f"{ns}:cur", f"{ns}:meta"):
                    found.add(schema)
        return sorted(found)

    def prune_stale(self) -> int:
        """Delete every key of the earlier schemas' indexes (and of their dead rebuilds);
        returns how many were deleted."""
        deleted = 0
        for schema in self.stale_schemas():
            for p in range(self.partitions):
                tag = self._store._tag(p)
                ns = f"{tag}:rm{schema}{self._base}"
                deleted += self._delete_matching(f"{ns}:*") + self._delete_matching(f"{ns}x*")
        return deleted

    def _delete_matching(self, pattern: str) -> int:
        """Delete the keys `pattern` matches (one partition's: the pattern carries its tag),
        500 at a time; how many there were."""
        keys = list(self._call(lambda m: list(self.client.scan_iter(match=m, count=1000)), pattern))
        for i in range(0, len(keys), 500):
            self._call(self.client.unlink, *keys[i:i + 500])
        return len(keys)

    def discard(self) -> None:
        for p in range(self.partitions):
            self._delete_matching(f"{self._ns(p)}:*")

    def reset(self, schema: int) -> None:
        with self._lock:
            self._known.clear()
            self._rows.clear()
        for p in range(self.partitions):
            self._delete_matching(f"{self._ns(p)}:*")
        self.set_meta("schema", str(schema))


class _RedisTxn(IndexTxn):
    """Reads go to Redis as they are asked; writes are buffered (and visible to this
    transaction's own reads) until `commit` sends them in one Lua call."""

    def __init__(self, index: RedisIndex, partition: int) -> None:
        self._index = index
        self.partition = partition
        self._ns = index._ns(partition)
        with index._lock:
            known = index._known.get(partition)
            self._seen = index._rows.setdefault(partition, {}) if known is not None else {}
        if known is not None:
            self.base, self._seq = known
            self.trusted = False
        else:
            cur = index._call(index.client.get, f"{self._ns}:cur")
            if cur is None:
                self.base, self._seq = 0, 0
            else:
                pos, _, seq = cur.decode().partition(" ")
                self.base, self._seq = int(pos), int(seq or 0)
            self.trusted = True
        self._keys: dict[str, int] = {f"{self._ns}:cur": 1}
        self._ops: list[Any] = []
        self._rows: dict[tuple[str, str], bytes | None] = {}
        self._read: dict[tuple[str, str], bytes | None] = {}
        self._orders: dict[str, dict[str, float | None]] = {}

    def _ki(self, key: str) -> int:
        i = self._keys.get(key)
        if i is None:
            i = self._keys[key] = len(self._keys) + 1
        return i

    def get(self, kind: str, key: str) -> bytes | None:
        k = (kind, key)
        if k in self._rows:
            return self._rows[k]
        if k in self._seen:
            return self._seen[k]
        value: bytes | None = self._index._call(self._index.client.hget, f"{self._ns}:r:{kind}", key)
        self._read[k] = value
        return value

    def keys(self, ordering: str) -> list[str]:
        client = self._index.client
        got = self._index._call(lambda k: client.zrange(k, 0, -1, withscores=True), f"{self._ns}:o:{ordering}")
        scores = {k.decode(): float(s) for k, s in got}
        for key, score in self._orders.get(ordering, {}).items():
            if score is None:
                scores.pop(key, None)
            else:
                scores[key] = score
        return [k for k, _ in sorted(scores.items(), key=lambda ks: (ks[1], ks[0]))]

    def put(self, kind: str, key: str, data: bytes, old: Iterable[Member], new: Iterable[Member]) -> None:
        self._rows[(kind, key)] = data
        self._ops += ["H", self._ki(f"{self._ns}:r:{kind}"), key, data]
        self.reorder(key, old, new)

    def delete(self, kind: str, key: str, old: Iterable[Member]) -> None:
        self._rows[(kind, key)] = None
        self._ops += ["D", self._ki(f"{self._ns}:r:{kind}"), key]
        self.reorder(key, old, ())

    def reorder(self, key: str, old: Iterable[Member], new: Iterable[Member]) -> None:
        before = dict(old)
        after = dict(new)
        for name in before.keys() - after.keys():
            self._ops += ["R", self._ki(f"{self._ns}:o:{name}"), key]
            self._orders.setdefault(name, {})[key] = None
        for name, score in after.items():
            if before.get(name) != score:
                self._ops += ["Z", self._ki(f"{self._ns}:o:{name}"), repr(float(score)), key]
                self._orders.setdefault(name, {})[key] = score

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def commit(self, upto: int) -> bool:
        keys = list(self._keys)
        index = self._index
        try:
            done = bool(index._call(index._script, keys, [self.base, f"{upto} {self._seq}", *self._ops]))
        except BaseException:
            self.rollback()
            raise
        with index._lock:
            if not done:  # another process committed first: what this one knew is stale
                index._known.pop(self.partition, None)
                index._rows.pop(self.partition, None)
                return False
            rows = index._rows.setdefault(self.partition, {})
            if len(rows) > 20_000:
                rows.clear()
            rows.update(self._read)
            rows.update(self._rows)
            index._known[self.partition] = (upto, self._seq)
        return True

    def rollback(self) -> None:
        self._ops.clear()
        with self._index._lock:  # (nothing was written; the cache may have been read stale)
            self._index._known.pop(self.partition, None)
            self._index._rows.pop(self.partition, None)
