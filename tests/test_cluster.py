"""The Redis store on a real local Redis Cluster (3 masters + 3 replicas): partitions spread
over the masters, an Agno agent runs unchanged, and a master killed during appends loses no
acknowledged event (with `wait_replicas=1`) and doubles none."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from adapters.agno import EventLogDb, OfflineModel
from eventlog import MessageAppended, StoreUnavailable, new_event, open_store
from eventlog.redis_store import RedisStreamStore
from tests.redis_cluster import RedisCluster, cluster_tools_available


def msg(text: str, session: str):  # type: ignore[no-untyped-def]
    return new_event(MessageAppended(session_id=session, role="user", content=text))


def test_partitions_spread_over_the_masters(cluster_url: str, redis_cluster: RedisCluster) -> None:
    store = open_store(cluster_url)
    assert isinstance(store, RedisStreamStore) and store.cluster and store.partitions == 16
    for i in range(64):
        store.append(f"session/s{i}", [msg(str(i), f"s{i}")])
    holders = set()
    for node in redis_cluster.masters():
        keys = redis.Redis(port=node.port).keys("el:{el:*}:log")
        if keys:
            holders.add(node.port)
    assert len(holders) >= 2
    info = store.info()
    assert info["cluster"] and info["cluster_state"] == "ok"
    assert store.verify().ok and len(list(store.read_all())) == 64


def test_agno_agent_runs_on_the_cluster(cluster_url: str) -> None:
    from agno.agent import Agent

    db = EventLogDb(cluster_url)
    agent = Agent(name="planner", id="planner", model=OfflineModel(id="planner"), db=db, add_history_to_context=True)
    agent.run("first turn on the cluster", session_id="c1", user_id="u1")
    reply = agent.run("second turn", session_id="c1", user_id="u1")
    assert "Earlier in this session (1 messages) you said: 'first turn on the cluster'" in str(reply.content)
    assert len(db.get_session("c1").runs or []) == 2  # type: ignore[union-attr]
    db.close()


@pytest.mark.skipif(not cluster_tools_available(), reason="redis-server/redis-cli not installed")
def test_master_killed_during_appends_loses_and_doubles_nothing(tmp_path: Path) -> None:
    cluster = RedisCluster(tmp_path / "failover").start()
    try:
        store = open_store(f"{cluster.url}?wait_replicas=1")
        acknowledged: list[str] = []
        victim = None
        for i in range(300):
            if i == 100:
                # the master holding the partition of session/k0 dies mid-stream
                partition = store.partition_of("session/k0")  # type: ignore[attr-defined]
                victim = cluster.master_for_key(f"el:{{el:{partition}}}:log")
                # kill -9 now; once its replica has taken over, bring the old master back
                # (it rejoins as a replica, so wait_replicas=1 can be met again)
                revive = threading.Thread(target=lambda v=victim: (cluster.kill_master(v), v.start()))
                revive.start()
                time.sleep(0.05)
            event = msg(str(i), f"k{i % 4}")
            for _attempt in range(200):
                try:
                    acknowledged.append(store.append(f"session/k{i % 4}", [event])[0].id)
                    break
                except StoreUnavailable:
                    time.sleep(0.1)  # a retry after an unknown outcome is safe: ids dedupe
            else:
                pytest.fail("the cluster never took the append back")
        assert victim is not None
        revive.join(timeout=60)
        cluster.wait_ok()
        fresh = open_store(cluster.url)
        ids = [e.id for e in fresh.read_all()]
        assert set(acknowledged) <= set(ids)
        assert max(Counter(ids).values()) == 1
        for k in range(4):
            chain = list(fresh.read(f"session/k{k}"))
            assert [int(e.payload.content) for e in chain] == list(range(k, 300, 4))  # type: ignore[union-attr]
        assert fresh.verify().ok
    finally:
        cluster.stop()
