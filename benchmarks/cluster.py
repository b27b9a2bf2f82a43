"""Append throughput on a 3-master Redis Cluster vs a single node, same run.

Uses EVENTLOG_BENCH_CLUSTER_URL when set; otherwise starts a local cluster (six redis-server
processes: three masters, three replicas) like the test fixture does.
"""

from __future__ import annotations

import os
from contextlib import ExitStack

from benchmarks._common import Result, Settings, fmt_rate, rate, redis_server, tempdir, timed
from benchmarks.append_redis import make_events
from eventlog import open_store


def run(settings: Settings) -> Result:
    n = 300 if settings.quick else 3000
    result = Result("cluster", "Redis Cluster (3 masters) vs single node, append throughput",
                    ["case", "single node", "cluster (16 partitions)", "cluster/single"])
    with ExitStack() as stack:
        url = os.environ.get("EVENTLOG_BENCH_CLUSTER_URL")
        if not url:
            from tests.redis_cluster import RedisCluster, cluster_tools_available

            if not cluster_tools_available():
                result.notes.append("skipped: redis-server/redis-cli not installed")
                return result
            d = stack.enter_context(tempdir())
            cluster = RedisCluster(d).start()
            stack.callback(cluster.stop)
            url = cluster.url
        single = stack.enter_context(redis_server())
        for label, per_call in (("1 event per call, 16 streams", 1), ("batches of 100, 16 streams", 100)):
            row = [label]
            rates = []
            for target in (single.url, url):
                store = open_store(target)
                groups = [make_events(per_call, f"c{i % 16}") for i in range(max(1, n // per_call))]
                rates.append(rate(len(groups) * per_call,
                                  timed(lambda: [store.append(f"session/c{i % 16}", g) for i, g in enumerate(groups)])))
                row.append(fmt_rate(rates[-1]))
                store.close()
            row.append(f"{rates[1] / rates[0]:.2f}x")  # (the rates as numbers: a formatted one may have no "k")
            result.rows.append(row)
    result.notes.append("one client process on a 2-core machine: the cluster spreads keys, not this client's CPU")
    return result
