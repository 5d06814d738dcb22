"""The servers a failure case runs on, all on loopback, and the four services on top of them,
watched by `make run`'s supervisor (a killed service is restarted with its backoff, as an
orchestrator would in production).

- `single`: one Redis, one Kafka node;
- `sentinel`: Redis with Sentinel (a primary, two replicas, three sentinels, a password) and one
  Kafka node; the services get `REDIS_URL=redis+sentinel://...` and nothing else changes;
- `kafka3`: one Redis and three Kafka nodes (replication 3, min.insync.replicas 2);
- `cluster`: Redis Cluster (three primaries, three replicas) and one Kafka node; the services get
  `REDIS_URL=redis+cluster://...`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from infra.processes import free_port
from infra.redis_cluster import RedisCluster, start_redis_cluster
from infra.redis_sentinel import SentinelGroup, start_sentinel_group
from infra.stack import ServiceProc, Stack, ready
from infra.supervisor import Supervisor

SERVICES = ("reservation", "payment", "seat_projection", "queue")
TOPOLOGIES = ("single", "sentinel", "kafka3", "cluster")
HOLD_S = 8.0  # an unpaid hold ends this soon, so every 202 is terminal within the check's bound

BASE_ENV = {
    "APP_ENV": "dev",
    "QUEUE_ENTRY_RATE_PER_IP": "0",
    "QUEUE_ENTRY_RATE_PER_USER": "0",
    "QUEUE_ADMIT_PER_S": "100000",
    "QUEUE_ADMIT_CONTROL": "fixed",  # faults are measured on an open gate
    "QUEUE_MAX_ACTIVE": "1000000",
    "QUEUE_ADMISSION_INTERVAL_MS": "20",
    "SEAT_HOLD_S": str(HOLD_S),
    "HOLD_SWEEP_S": "0.5",
    "PAYMENT_LATENCY_MS": "5",
    "KAFKA_SEND_TIMEOUT_S": "2",
    "SHUTDOWN_DRAIN_S": "2",
}
KAFKA3_ENV = {"KAFKA_CLUSTER": "3", "KAFKA_REPLICATION": "3", "KAFKA_MIN_INSYNC_REPLICAS": "2"}


@dataclass
class Running:
    """A started topology: the stack, its service URLs and what a fault needs to reach."""

    topology: str
    stack: Stack
    sentinel: SentinelGroup | None = None
    cluster: RedisCluster | None = None
    concert: str = ""  # the case's concert, once created
    log: list[str] = field(default_factory=list)  # what the supervisor said

    @property
    def urls(self) -> dict[str, str]:
        return {s.name: s.url for s in self.stack.services}

    @property
    def brokers(self) -> str:
        return self.stack.env["KAFKA_BROKERS"]

    def service(self, name: str) -> ServiceProc:
        return next(s for s in self.stack.services if s.name == name)

    async def until_ready(self, name: str, within_s: float = 120.0) -> None:
        url = self.service(name).url
        deadline = asyncio.get_running_loop().time() + within_s
        while not await asyncio.to_thread(ready, url):
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"{name} not ready again within {within_s:g} s")
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def running(
    topology: str, workdir: Path, extra_env: dict[str, str] | None = None
) -> AsyncIterator[Running]:
    if topology not in TOPOLOGIES:
        raise ValueError(f"unknown topology {topology!r}: one of {', '.join(TOPOLOGIES)}")
    stack = Stack(workdir)
    for var in ("REDIS_URL", "KAFKA_BROKERS", "KAFKA_CLUSTER"):  # always our own, on loopback
        stack.env.pop(var, None)
    stack.env.update(BASE_ENV)
    if topology == "kafka3":
        stack.env.update(KAFKA3_ENV)
    stack.env.update(extra_env or {})
    env = Running(topology, stack)
    stop_watching = threading.Event()
    watcher: threading.Thread | None = None
    try:
        if topology == "sentinel":
            env.sentinel = await asyncio.to_thread(
                start_sentinel_group, workdir / "sentinel", secrets.token_urlsafe(16)
            )
            stack.env["REDIS_URL"] = env.sentinel.url
        if topology == "cluster":
            env.cluster = await asyncio.to_thread(start_redis_cluster, workdir / "redis-cluster")
            stack.env["REDIS_URL"] = env.cluster.url
        await asyncio.to_thread(stack.start_infra)
        for name in SERVICES:
            await asyncio.to_thread(stack.start_service, name, port=free_port())
        supervisor = Supervisor(stack, env.log.append, servers=False)
        watcher = threading.Thread(
            target=_watch, args=(supervisor, stop_watching), name="supervisor", daemon=True
        )
        watcher.start()
        yield env
    finally:
        stop_watching.set()
        if watcher is not None:
            watcher.join()
        await asyncio.to_thread(stack.stop)
        if env.sentinel is not None:
            await asyncio.to_thread(env.sentinel.stop)
        if env.cluster is not None:
            await asyncio.to_thread(env.cluster.stop)


def _watch(supervisor: Supervisor, stop: threading.Event) -> None:
    import time

    while not stop.wait(0.1):
        supervisor.check(time.monotonic())
