"""Append throughput on Redis vs raw redis-py in the same run.

- single: our `append` of one event per call vs a raw `XADD` per call of the same encoded
  event (one round trip each; ours also checks the version, the id and the chain in Lua).
- batch N: our `append` of N events in one call vs a raw Lua script that XADDs the same N
  encoded events in one call.
"""

from __future__ import annotations

import redis

from benchmarks._common import Result, Settings, fmt_rate, pct, rate, redis_server, timed
from eventlog import Actor, MessageAppended, codec, new_event, open_store

RAW_BATCH_LUA = "for i = 1, #ARGV do redis.call('XADD', KEYS[1], '*', 'e', ARGV[i]) end return #ARGV"


def make_events(n: int, session: str = "s1") -> list:  # type: ignore[type-arg]
    actor = Actor(agent_id="planner", user_id="alice", session_id=session, run_id="r1")
    return [new_event(MessageAppended(session_id=session, role="user", content=f"message {i} " + "x" * 80),
                      actor=actor) for i in range(n)]


def run(settings: Settings) -> Result:
    single_n = 500 if settings.quick else 5000
    batches = [(100, 5 if settings.quick else 50), (1000, 2 if settings.quick else 20)]
    result = Result("append_redis", "Append, Redis (events/s; ratio = ours / raw)",
                    ["case", "raw", "ours", "ours/raw", "target"])
    with redis_server() as server:
        client = redis.Redis(port=server.port)
        store = open_store(server.url)
        events = make_events(single_n)
        payloads = [codec.encode(codec.seal(e, stream="session/raw", version=1, prev_hash="")) for e in events]
        raw = rate(single_n, timed(lambda: [client.xadd("raw:single", {"e": p}) for p in payloads]))
        ours = rate(single_n, timed(lambda: [store.append("session/s1", [e]) for e in events]))
        result.rows.append(["1 event per call", fmt_rate(raw), fmt_rate(ours), pct(ours, raw), ">= 80%"])
        script = client.register_script(RAW_BATCH_LUA)
        for size, count in batches:
            groups = [make_events(size, f"b{size}-{g}") for g in range(count)]
            raw_groups = [[codec.encode(codec.seal(e, stream="x/y", version=1, prev_hash="")) for e in g] for g in groups]
            raw = rate(size * count, timed(lambda: [script(keys=[f"raw:batch{size}"], args=g) for g in raw_groups]))
            ours = rate(size * count, timed(lambda: [store.append(f"session/b{size}-{i}", g) for i, g in enumerate(groups)]))
            result.rows.append([f"batch of {size}", fmt_rate(raw), fmt_rate(ours), pct(ours, raw), ">= 60%"])
        store.close()
    result.notes.append("private redis-server on loopback, no AOF; raw payloads are the same encoded events")
    return result
