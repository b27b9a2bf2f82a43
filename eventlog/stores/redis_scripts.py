"""The Lua scripts of the Redis store: the atomic append and the per-stream read.

An append is one script so that the id check, the `expected_version` check, the head check
and the writes happen atomically on the server; a stream read is one script so that its
index (a list of positions) and the entries it points to are read in one round trip.
"""

from __future__ import annotations

# KEYS: log, seq, ids, heads, streamlist, logid
# ARGV: stream, expected (-1 none), base_version, base_hash, new_head, n, id1..idn, json1..jsonn,
#       log id, acked (the highest position of the partition this client has seen)
# First the log's identity: {'LOST', id found} when the partition's id key is not the log id
# the client writes to (Redis restarted empty, flushed, replaced); {'EVICTED', what} when some
# of the partition's keys are gone and others not, or the stream's index does not match its
# head (keys evicted: maxmemory-policy allkeys-*); {'LOST', ''} when they are all gone though
# the client saw events. Nothing is written in those cases.
# Ids come first, in one run, so HMGET takes them straight from ARGV (no table built for
# them). Replies: first_seq (an integer: the common case, cheapest to build and parse);
# {'DUP', seq1, json1, ...} ('' and '' for ids not stored, the stored event for those that
# are: a retry needs no further round trip); {'CONFLICT' | 'STALE', version, hash} with the
# actual head. Only the integer reply means something was written.
APPEND_LUA = """
local n = tonumber(ARGV[6])
local have = redis.call('GET', KEYS[6])
if have ~= ARGV[7 + 2 * n] then return {'LOST', have or ''} end
local present = redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
if present ~= 0 and present ~= 4 then return {'EVICTED', 'partition'} end
if present == 0 and tonumber(ARGV[8 + 2 * n]) > 0 then return {'LOST', ''} end
local found = redis.call('HMGET', KEYS[3], unpack(ARGV, 7, 6 + n))
for i = 1, n do
  if found[i] then
    local out = {'DUP'}
    for j = 1, n do
      local seq, body = found[j], ''
      if seq then
        local entry = redis.call('XRANGE', KEYS[1], '0-' .. seq, '0-' .. seq)[1]
        if entry and entry[2][1] == 'e' then body = entry[2][2] end
      else
        seq = ''
      end
      out[2 * j] = seq; out[2 * j + 1] = body
    end
    return out
  end
end
local head = redis.call('HGET', KEYS[4], ARGV[1])
local version, hash = 0, ''
if head then
  local sp = string.find(head, ' ', 1, true)
  version = tonumber(string.sub(head, 1, sp - 1)); hash = string.sub(head, sp + 1)
end
local expected = tonumber(ARGV[2])
if redis.call('LLEN', KEYS[5]) ~= version then return {'EVICTED', 'stream'} end
if expected >= 0 and expected ~= version then return {'CONFLICT', tostring(version), hash} end
if tonumber(ARGV[3]) ~= version or ARGV[4] ~= hash then return {'STALE', tostring(version), hash} end
local first = redis.call('INCRBY', KEYS[2], n) - n
local log, bodies = KEYS[1], 6 + n
local index, seqs = {}, {}
for i = 1, n do
  local seq = first + i
  redis.call('XADD', log, '0-' .. seq, 'e', ARGV[bodies + i])
  index[2 * i - 1] = ARGV[6 + i]; index[2 * i] = seq
  seqs[i] = seq
end
redis.call('HSET', KEYS[3], unpack(index))
redis.call('RPUSH', KEYS[5], unpack(seqs))
redis.call('HSET', KEYS[4], ARGV[1], ARGV[5])
return first + 1
"""

# KEYS: log, streamlist, heads, logid, seq, ids; ARGV: from_index (0-based), to_index (-1 =
# end), stream, log id, seen (the highest position of the partition the client has seen).
# ARGV[6]: the most entries to return in this reply. Reply: {'LOST', id found} (not the
# client's log), {'EVICTED', what} (some of the partition's keys gone), else {head version,
# {seq1, seq2, ...}, {json1, json2, ...}} with '' for an entry that is gone (the client
# checks that every version is there) -- or, for more entries than ARGV[6], without the
# third item: the client then reads them with XRANGEs of their spans (see
# `RedisReads._entries_of`). A short read is one round trip; for a long one, building
# 2,000 entries into Lua tables and back cost six times the XRANGE itself. Entries never
# change once written, so reading them after this check only risks finding some gone
# (evicted, flushed), which the client reports as lost.
READ_STREAM_LUA = """
local have = redis.call('GET', KEYS[4])
if have ~= ARGV[4] then return {'LOST', have or ''} end
local present = redis.call('EXISTS', KEYS[1], KEYS[3], KEYS[5], KEYS[6])
if present ~= 0 and present ~= 4 then return {'EVICTED', 'partition'} end
if present == 0 and tonumber(ARGV[5]) > 0 then return {'LOST', ''} end
local head = redis.call('HGET', KEYS[3], ARGV[3])
local version = '0'
if head then version = string.sub(head, 1, string.find(head, ' ', 1, true) - 1) end
local seqs = redis.call('LRANGE', KEYS[2], ARGV[1], ARGV[2])
if #seqs > tonumber(ARGV[6]) then return {version, seqs} end
local out = {}
for i, seq in ipairs(seqs) do
  local entry = redis.call('XRANGE', KEYS[1], '0-' .. seq, '0-' .. seq)
  if entry[1] then out[i] = entry[1][2][2] else out[i] = '' end
end
return {version, seqs, out}
"""

# The first page of a partition's log, with the checks of the log's identity in the same
# round trip. KEYS: log, seq, logid, ids, heads; ARGV: start id, count, log id, seen (the highest position
# the client has seen). Replies: {'LOST', id found}; {'BEHIND', seq} (the log ends before what
# the client saw: restored from an older backup, or its counter evicted); {'EVICTED', 'log'}
# (the counter says events, the log key is gone); {'OK', the XRANGE reply}.
FIRST_PAGE_LUA = """
local have = redis.call('GET', KEYS[3])
if have ~= ARGV[3] then return {'LOST', have or ''} end
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
if seq < tonumber(ARGV[4]) then return {'BEHIND', tostring(seq)} end
if seq > 0 and redis.call('EXISTS', KEYS[1]) == 0 then return {'EVICTED', 'log'} end
local present = redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[4], KEYS[5])
if present ~= 0 and present ~= 4 then return {'EVICTED', 'partition'} end
return {'OK', redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])}
"""
