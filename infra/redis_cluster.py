"""Redis Cluster on loopback from Debian's `redis-server` and `redis-cli`: three primaries and
three replicas (`redis-cli --cluster create --cluster-replicas 1`). The services reach it with
`REDIS_URL=redis+cluster://...` unchanged: every key of a concert shares the hash tag
`{concert_id}`, so each concert lives on one slot and every script runs there.

`REDIS_TOPOLOGY=cluster make test-integration` (or `make test-redis-cluster`) runs the whole
integration suite against it; `make chaos` kills the primary that owns a concert under load.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis

from infra.embedded import READY_TIMEOUT_S, Server, start_redis
from infra.processes import debian_tool, free_port, stop_all, wait_until

NODE_TIMEOUT_MS = 2000  # a primary silent this long is failed over to its replica


@dataclass
class RedisCluster:
    nodes: list[Server]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(n.address for n in self.nodes)

    def primary_of(self, key: str) -> Server:
        """The node serving `key`'s slot now."""
        for node in self.nodes:
            if node.proc.poll() is not None:
                continue
            client = redis.Redis(port=node.port, socket_timeout=1)
            try:
                slot = int(client.cluster("KEYSLOT", key))
                for start, end, primary, *_ in client.cluster("SLOTS"):
                    if start <= slot <= end:
                        port = int(primary[1])
                        return next(n for n in self.nodes if n.port == port)
            except redis.RedisError:
                continue
            finally:
                client.close()
        raise RuntimeError(f"no live node knows who serves {key!r}")

    def healthy(self) -> bool:
        """Every live node says the cluster is ok (all slots served)."""
        live = [n for n in self.nodes if n.proc.poll() is None]
        return bool(live) and all(_cluster_ok(n.port) for n in live)

    def stop(self) -> None:
        stop_all([n.proc for n in self.nodes])


def _cluster_ok(port: int) -> bool:
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        return bool(client.cluster("INFO").get("cluster_state") == "ok")
    except redis.RedisError:
        return False
    finally:
        client.close()


def start_redis_cluster(workdir: Path) -> RedisCluster:
    nodes: list[Server] = []
    cluster = RedisCluster(nodes)
    try:
        for i in range(6):
            d = workdir / f"node-{i}"
            args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(d / "nodes.conf"),
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--cluster-port",  # the bus; by default port + 10000, past 65535 for high ports
                str(free_port()),
            ]
            nodes.append(start_redis(d, extra_args=args, name=f"redis cluster node {i}"))
        cli = debian_tool("redis-cli", "redis-tools")
        addresses = [n.address for n in nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_until(cluster.healthy, timeout=READY_TIMEOUT_S, what="redis cluster (all slots ok)")
        return cluster
    except Exception:
        cluster.stop()
        raise
