"""A real local Redis Cluster for tests: six redis-server processes (three masters, three
replicas) on free loopback ports, joined with `redis-cli --cluster create`, torn down after.

Tests can kill a master (`kill_master`) and wait for its replica to be promoted.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.redis_server import RedisServer, free_port


def cluster_tools_available() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def _cli(port: int, *args: str, timeout: float = 10) -> str:
    done = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True,
                          text=True, timeout=timeout, check=False)
    return done.stdout.strip()


class RedisCluster:
    def __init__(self, workdir: Path, masters: int = 3, replicas_per_master: int = 1) -> None:
        self.workdir = workdir
        self.size = masters * (1 + replicas_per_master)
        self.replicas = replicas_per_master
        self.nodes: list[RedisServer] = []

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes if n.proc and n.proc.poll() is None)
        return f"redis+cluster://{seeds}"

    def start(self) -> RedisCluster:
        ports = _distinct_ports(self.size)
        for port in ports:
            node = RedisServer(
                self.workdir / str(port), port=port,
                extra=["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                       "--cluster-node-timeout", "1000", "--appendonly", "yes", "--appendfsync", "always"],
            )
            self.nodes.append(node.start())
        addresses = [f"127.0.0.1:{p}" for p in ports]
        done = subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", str(self.replicas),
             "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-500:]} {done.stderr[-500:]}")
        self.wait_ok()
        return self

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every live node reports cluster_state:ok and all 16384 slots are served."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [n for n in self.nodes if n.proc and n.proc.poll() is None]
            infos = [_cli(n.port, "cluster", "info") for n in live]
            links = [_cli(n.port, "info", "replication") for n in live]
            synced = all("role:master" in r or "master_link_status:up" in r for r in links)
            if infos and synced and all("cluster_state:ok" in i and "cluster_slots_ok:16384" in i for i in infos):
                return
            time.sleep(0.2)
        raise RuntimeError("cluster did not become healthy in time")

    def masters(self) -> list[RedisServer]:
        out = []
        for node in self.nodes:
            if node.proc and node.proc.poll() is None and "role:master" in _cli(node.port, "info", "replication"):
                out.append(node)
        return out

    def master_for_key(self, key: str) -> RedisServer:
        live = next(n for n in self.nodes if n.proc and n.proc.poll() is None)
        return self.master_for_slot(int(_cli(live.port, "cluster", "keyslot", key)))

    def master_for_slot(self, slot: int) -> RedisServer:
        for node in self.masters():
            for line in _cli(node.port, "cluster", "nodes").splitlines():
                parts = line.split()
                if "myself" in parts[2]:
                    for rng in parts[8:]:
                        lo, _, hi = rng.partition("-")
                        if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                            return node
        raise RuntimeError(f"no master serves slot {slot}")

    def served_slot(self, node: RedisServer) -> int:
        for line in _cli(node.port, "cluster", "nodes").splitlines():
            parts = line.split()
            if "myself" in parts[2] and len(parts) > 8:
                return int(parts[8].partition("-")[0])
        raise RuntimeError(f"node {node.port} serves no slot")

    def kill_master(self, node: RedisServer, wait_failover: bool = True, timeout: float = 30) -> None:
        """kill -9 a master and (by default) wait until a replica serves its slots."""
        slot = self.served_slot(node)
        node.kill()
        if not wait_failover:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.master_for_slot(slot) is not node:
                    self.wait_ok(max(1.0, deadline - time.monotonic()))
                    return
            except RuntimeError:
                pass
            time.sleep(0.2)
        raise RuntimeError("no replica took over in time")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


def _distinct_ports(n: int) -> list[int]:
    """Free ports whose cluster bus ports (+10000) are free too."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports
