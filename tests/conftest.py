"""Shared fixtures: private Redis servers and one `store` fixture per backend.

Redis tests need the `redis-server` binary. On a laptop without it they skip with a reason;
under CI (CI=true) a missing binary fails the run instead, so green CI always means Redis ran.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_server import RedisServer, redis_binary

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_redis_binary() -> None:
    if redis_binary() is None:
        if IN_CI:
            pytest.fail("redis-server binary not found, and CI=true: Redis tests must run in CI")
        pytest.skip("redis-server binary not installed; Redis tests skipped (install redis-server)")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private redis-server for the whole test session (flushed per test by `redis_url`)."""
    need_redis_binary()
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.kill()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    import redis

    if redis_server.proc is None or redis_server.proc.poll() is not None:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real local Redis Cluster (3 masters, 3 replicas) for the whole test session."""
    from tests.redis_cluster import RedisCluster, cluster_tools_available

    if not cluster_tools_available():
        if IN_CI:
            pytest.fail("redis-server/redis-cli not found, and CI=true: cluster tests must run in CI")
        pytest.skip("redis-server/redis-cli not installed; cluster tests skipped")
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster: object) -> str:
    """The cluster, emptied (every master flushed) for this test."""
    import redis

    for node in redis_cluster.masters():  # type: ignore[attr-defined]
        client = redis.Redis(port=node.port)
        client.flushall()
        client.close()
    return str(redis_cluster.url)  # type: ignore[attr-defined]


@pytest.fixture
def killable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server for one test, durable (AOF, fsync always) so a kill -9 loses
    nothing it acknowledged, and free to be killed and restarted."""
    need_redis_binary()
    server = RedisServer(tmp_path / "redis", extra=["--appendonly", "yes", "--appendfsync", "always"])
    server.start()
    yield server
    server.kill()


# --- one fixture per store backend -----------------------------------------------------------

STORE_KINDS = ["memory", "file", "redis", "fallback", "cluster"]


def _make_store_factory(kind: str, request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    import itertools

    from eventlog import open_store

    counter = itertools.count()
    opened: list[object] = []

    if kind in ("redis", "fallback"):
        url = request.getfixturevalue("redis_url")
    if kind == "cluster":
        url = request.getfixturevalue("cluster_url")

    def factory():  # type: ignore[no-untyped-def]
        n = next(counter)
        if kind == "memory":
            store = open_store("memory://")
        elif kind == "file":
            store = open_store(str(tmp_path / f"log{n}"))
        elif kind in ("redis", "cluster"):
            store = open_store(f"{url}?prefix=t{n}")
        elif kind == "fallback":
            store = open_store(f"{url}?prefix=t{n}", fallback=str(tmp_path / f"fb{n}"))
        else:  # pragma: no cover
            raise AssertionError(kind)
        opened.append(store)
        return store

    def close_all() -> None:
        for store in opened:
            store.close()  # type: ignore[attr-defined]

    request.addfinalizer(close_all)
    return factory


@pytest.fixture(params=STORE_KINDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A callable that opens a fresh, empty store of the parametrized kind."""
    return _make_store_factory(request.param, request, tmp_path)


@pytest.fixture
def store(store_factory):  # type: ignore[no-untyped-def]
    """A fresh, empty store of each kind in turn."""
    return store_factory()
