"""Redis with Sentinel on loopback, from Debian's `redis-server` and `redis-sentinel`: one primary,
two replicas and three sentinels (quorum 2), optionally behind a password. Used by the Sentinel
tests and `make chaos`; the services reach it with `REDIS_URL=redis+sentinel://...` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import redis
from redis.sentinel import Sentinel

from infra.embedded import READY_TIMEOUT_S, Server, start_redis, start_server
from infra.processes import debian_tool, free_port, stop_all, wait_until

SERVICE = "ticketing"
# A primary silent this long is down: the failover's detection time. Sentinels ping once a
# second, so this must be several pings long. At 1000 ms (one ping) a freshly promoted primary
# that answered its first ping a little late was taken for down too, and a second failover
# promoted the other replica while clients still wrote to the first: those writes were thrown
# away when the sentinels turned it back into a replica (438 tokens in one `make chaos` run;
# reproduced and explained in the README's failure matrix). Redis's default is 30000.
DOWN_AFTER_MS = 5000
FAILOVER_TIMEOUT_MS = 5000


@dataclass
class SentinelGroup:
    redis: list[Server]  # the data nodes; redis[0] started as the primary
    sentinels: list[Server]
    password: str | None = None
    workdir: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        nodes = ",".join(s.address for s in self.sentinels)
        return f"redis+sentinel://{auth}{nodes}/{SERVICE}/0"

    def primary_port(self) -> int:
        """The port of the node the sentinels name as primary now."""
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            [("127.0.0.1", s.port) for s in self.sentinels],
            sentinel_kwargs={"password": self.password, "socket_timeout": 0.5},
            socket_timeout=0.5,
        )
        return int(sentinel.discover_master(SERVICE)[1])  # type: ignore[no-untyped-call]

    def primary(self) -> Server:
        port = self.primary_port()
        return next(s for s in self.redis if s.port == port)

    def replicas_online(self) -> int:
        client = redis.Redis(port=self.primary_port(), password=self.password, socket_timeout=1)
        try:
            return int(client.info("replication")["connected_slaves"])
        finally:
            client.close()

    def stop(self) -> None:
        stop_all([s.proc for s in self.sentinels + self.redis])


def start_sentinel_group(
    workdir: Path,
    password: str | None = None,
    *,
    down_after_ms: int = DOWN_AFTER_MS,
    settled: bool = True,
) -> SentinelGroup:
    """The group, returned once its replicas have synced and its sentinels know each other;
    `settled=False` returns once the replicas are merely connected (the old readiness, kept for
    `python -m perf.chaos.double_failover`)."""
    auth = ["--requirepass", password, "--masterauth", password] if password else []
    primary = start_redis(workdir / "redis-0", extra_args=auth, name="redis primary")
    nodes = [primary]
    group = SentinelGroup(nodes, [], password, workdir)
    try:
        for i in (1, 2):
            replica_of = ["--replicaof", "127.0.0.1", str(primary.port)]
            nodes.append(
                start_redis(
                    workdir / f"redis-{i}", extra_args=[*auth, *replica_of], name=f"redis {i}"
                )
            )
        for i in range(3):
            group.sentinels.append(
                _start_sentinel(workdir / f"sentinel-{i}", primary.port, password, down_after_ms)
            )
        if not settled:
            wait_until(
                lambda: _connected_replicas(primary.port, password) == 2,
                timeout=READY_TIMEOUT_S,
                what="redis replicas connected",
            )
            return group
        wait_until(
            lambda: all(_in_sync(n.port, password) for n in nodes[1:]),
            timeout=READY_TIMEOUT_S,
            what="redis replicas in sync",
        )
        wait_until(  # each sentinel knows the two others: a failover can be voted from now on
            lambda: all(_other_sentinels(s.port, password) == 2 for s in group.sentinels),
            timeout=READY_TIMEOUT_S,
            what="sentinels aware of each other",
        )
        return group
    except Exception:
        group.stop()
        raise


def _in_sync(port: int, password: str | None) -> bool:
    """The replica at `port` finished its initial sync and follows its primary."""
    client = redis.Redis(port=port, password=password, socket_timeout=1)
    try:
        info = client.info("replication")
        return bool(
            info.get("master_link_status") == "up" and not info.get("master_sync_in_progress")
        )
    except redis.RedisError:
        return False
    finally:
        client.close()


def _connected_replicas(port: int, password: str | None) -> int:
    client = redis.Redis(port=port, password=password, socket_timeout=1)
    try:
        return int(client.info("replication").get("connected_slaves", 0))
    except redis.RedisError:
        return 0
    finally:
        client.close()


def _other_sentinels(port: int, password: str | None) -> int:
    client = redis.Redis(port=port, password=password, socket_timeout=1, decode_responses=True)
    try:
        master = client.sentinel_master(SERVICE)
        assert isinstance(master, dict)
        return int(master["num-other-sentinels"])
    except redis.RedisError:
        return 0
    finally:
        client.close()


def _start_sentinel(
    workdir: Path, primary_port: int, password: str | None, down_after_ms: int
) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = [
        "bind 127.0.0.1",
        f"port {port}",
        f"dir {workdir}",
        f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2",
        f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}",
        f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {SERVICE} 1",
    ]
    if password:  # the data nodes', the sentinels' own, and between sentinels
        lines += [
            f"sentinel auth-pass {SERVICE} {password}",
            f"requirepass {password}",
            f"sentinel sentinel-pass {password}",
        ]
    config = workdir / "sentinel.conf"  # rewritten by the sentinel as it learns the topology
    config.write_text("\n".join(lines) + "\n")
    config.chmod(0o600)
    argv = [debian_tool("redis-sentinel", "redis-sentinel"), str(config)]
    return start_server("redis sentinel", port, argv, workdir / "sentinel.log")
