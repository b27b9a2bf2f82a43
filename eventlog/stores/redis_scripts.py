"""The Lua scripts of the Redis store: the atomic append and the per-stream read.

An append is one script so that the id check, the `expected_version` check, the head check
and the writes happen atomically on the server; a stream read is one script so that its
index (a list of positions) and the entries it points to are read in one round trip.
"""

from __future__ import annotations

# KEYS: log, seq, ids, heads, streamlist
# ARGV: stream, expected (-1 none), base_version, base_hash, new_head, n, id1..idn, json1..jsonn
# Ids come first, in one run, so HMGET takes them straight from ARGV (no table built for
# them). Replies: first_seq (an integer: the common case, cheapest to build and parse);
# {'DUP', seq1, json1, ...} ('' and '' for ids not stored, the stored event for those that
# are: a retry needs no further round trip); {'CONFLICT' | 'STALE', version, hash} with the
# actual head. Only the integer reply means something was written.
APPEND_LUA = """
local n = tonumber(ARGV[6])
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

# KEYS: log, streamlist; ARGV: from_index (0-based), to_index (-1 = end)
READ_STREAM_LUA = """
local seqs = redis.call('LRANGE', KEYS[2], ARGV[1], ARGV[2])
local out = {}
for i, seq in ipairs(seqs) do
  local entry = redis.call('XRANGE', KEYS[1], '0-' .. seq, '0-' .. seq)
  if entry[1] then out[#out + 1] = seq; out[#out + 1] = entry[1][2][2] end
end
return out
"""
