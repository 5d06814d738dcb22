"""Build a redis-py asyncio client from REDIS_URL: standalone, Sentinel or Cluster.

- ``redis://[:password@]host:port/db`` (also ``rediss://``, ``unix://``): one server.
- ``redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db]``: Sentinel failover.
- ``redis+cluster://[:password@]host:port[,host:port...]``: Redis Cluster (keys are hash-tagged
  per concert, so every script runs on one slot).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from prometheus_client import Counter
from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff

from shared import compat
from shared.errors import StoreFull, Unavailable
from shared.settings import InfraSettings

log = logging.getLogger(__name__)

# Errors that mean "Redis is not reachable or not serving right now": callers answer 503.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    rexc.ConnectionError,
    rexc.TimeoutError,
    rexc.BusyLoadingError,
    rexc.ClusterDownError,
    rexc.MasterDownError,
    rexc.TryAgainError,
    rexc.ReadOnlyError,
    rexc.OutOfMemoryError,
    rexc.SlotNotCoveredError,
    # The cluster client's last word once no node answers while it re-reads the topology
    # ("Redis Cluster cannot be connected"): an outage, seen as a 500 before (a test pausing
    # every node of a cluster found it).
    rexc.RedisClusterException,
    OSError,
)

AnyRedis = Redis | RedisCluster


class QueuingRedisCluster(RedisCluster):
    """A RedisCluster whose commands wait for a connection instead of failing, as
    BlockingConnectionPool makes them wait on a standalone Redis.

    redis-py's cluster client raises MaxConnectionsError once `max_connections` commands are in
    flight to one node, and a concert's keys all live on one node: measured here, 2,244 of 5,000
    concurrent queue entries from two clients answered 503 on a fresh cluster. At most
    `max_connections` commands in flight per client, the others queued.

    A command also gives up after `DEADLINE_TIMEOUTS` socket timeouts, as a standalone client
    does after its timeouts and one retry. redis-py's own bound is much looser on a cluster:
    a failed command re-reads the slot map from each node in turn, under a lock the other
    failed commands queue on. Measured here with every node paused for 4 s, a fan's poll
    waited the whole 4 s and was then answered 200 instead of a quick 503.
    """

    DEADLINE_TIMEOUTS = 4

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limit = int(kwargs.get("max_connections", 2**31))
        self._in_flight = asyncio.Semaphore(limit)
        self._deadline_s = self.DEADLINE_TIMEOUTS * float(kwargs.get("socket_timeout") or 1.0)
        compat.count_pool_limit(self, limit)  # the pool metrics of shared/compat.py

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._in_flight.locked():
            compat.POOL_WAITS.inc()
        async with self._in_flight:
            compat.POOL_IN_USE.inc()
            try:
                async with asyncio.timeout(self._deadline_s):
                    return await super().execute_command(*args, **kwargs)
            except TimeoutError as e:  # the deadline (redis-py's own timeouts are RedisErrors)
                raise rexc.TimeoutError(
                    f"no answer from the cluster within {self._deadline_s:g} s"
                ) from e
            finally:
                compat.POOL_IN_USE.dec()


# Process-wide: every service's /metrics registers it (shared.metrics.HttpMetrics).
OUT_OF_MEMORY = Counter(
    "redis_out_of_memory_total",
    "Redis writes refused at its memory limit (answered 503 store_full)",
    registry=None,
)
_oom_logged = {"at": 0.0, "since": 0}
OOM_LOG_EVERY_S = 10.0


def unavailable(exc: Exception, what: str) -> Unavailable:
    """The 503 for a failed Redis call (one of UNAVAILABLE_ERRORS). At the memory limit it is a
    `store_full`, counted and logged (at most once per OOM_LOG_EVERY_S, with the count)."""
    if not isinstance(exc, rexc.OutOfMemoryError):
        return Unavailable(f"{what} is unavailable, retry shortly")
    OUT_OF_MEMORY.inc()
    _oom_logged["since"] += 1
    now = time.monotonic()
    if now - _oom_logged["at"] >= OOM_LOG_EVERY_S:
        log.warning(
            "Redis is at its maxmemory: %d write(s) refused with 503 store_full since the last "
            "report (%s)",
            _oom_logged["since"],
            what,
        )
        _oom_logged.update(at=now, since=0)
    return StoreFull(f"{what} is full (Redis at its memory limit), retry later")


def read_lua(module_file: str, name: str) -> str:
    """The Lua script `name`.lua in the `lua/` folder beside `module_file`: scripts live as Lua
    files next to the module that runs them."""
    return (Path(module_file).with_name("lua") / f"{name}.lua").read_text()


def _split(url: str, scheme: str) -> tuple[str | None, list[tuple[str, int]], list[str]]:
    rest = url[len(scheme) + 3 :]
    netloc, _, path = rest.partition("/")
    password = None
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        password = unquote(auth.split(":", 1)[-1]) or None
    nodes = []
    for part in netloc.split(","):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"REDIS_URL node {part!r} must be host:port")
        nodes.append((host, int(port)))
    return password, nodes, [p for p in path.split("/") if p]


def service_redis(infra: InfraSettings) -> AnyRedis:
    """A service's client, as its settings say: REDIS_URL, REDIS_SOCKET_TIMEOUT_S and
    REDIS_MAX_CONNECTIONS."""
    return create_redis(
        infra.redis_address,
        socket_timeout=infra.redis_socket_timeout_s,
        max_connections=infra.redis_max_connections,
    )


def create_redis(url: str, *, socket_timeout: float, max_connections: int) -> AnyRedis:
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1),
        "health_check_interval": 30,
    }
    if url.startswith("redis+sentinel://"):
        password, nodes, path = _split(url, "redis+sentinel")
        if not path:
            raise ValueError("REDIS_URL for Sentinel needs the service name: .../mymaster")
        # The password goes to the sentinels too (sentinel_kwargs), not only to the primary.
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            nodes,
            sentinel_kwargs={
                "password": password,
                "socket_timeout": socket_timeout,
                "socket_connect_timeout": socket_timeout,
            },
            password=password,
        )
        db = int(path[1]) if len(path) > 1 else 0
        master: Redis = sentinel.master_for(
            path[0],
            connection_pool_class=compat.CountedSentinelPool,
            password=password,
            db=db,
            max_connections=max_connections,
            **common,
        )
        return master
    if url.startswith("redis+cluster://"):
        password, nodes, _ = _split(url, "redis+cluster")
        return QueuingRedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in nodes],
            password=password,
            max_connections=max_connections,
            **common,
        )
    if url.split("://", 1)[0] not in ("redis", "rediss", "unix"):
        raise ValueError(
            "REDIS_URL must start with redis://, rediss://, unix://, "
            "redis+sentinel:// or redis+cluster://"
        )
    pool = compat.CountedBlockingPool.from_url(
        url, max_connections=max_connections, timeout=socket_timeout, **common
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() disconnects it


async def load_scripts(redis: AnyRedis, scripts: list[Any]) -> None:
    """SCRIPT LOAD each script (on every primary of a Cluster) before serving: a burst of first
    calls otherwise all meet NOSCRIPT at once, and in that storm redis-py 8.1.0's cluster client
    sent on connections another task had closed (AttributeError, answered 500: 5,000 entries
    from two queue instances, `make test-redis-cluster`). Redis being away is not an error
    here: EVALSHA loads a missing script on first use anyway."""
    try:
        for script in scripts:
            await redis.script_load(script.script)
    except UNAVAILABLE_ERRORS:
        log.warning("Redis unavailable at start: scripts will be loaded on first use")


async def run_scripts(
    redis: AnyRedis, script: Any, calls: list[tuple[list[str], list[Any]]]
) -> list[Any]:
    """`script` once per (keys, args): one pipelined round trip on a standalone or Sentinel
    primary; on a Cluster, where the keys may live on several nodes, concurrent calls."""
    if isinstance(redis, RedisCluster):
        return list(await asyncio.gather(*(script(keys=k, args=a) for k, a in calls)))
    pipe = redis.pipeline(transaction=False)
    for keys, args in calls:
        await script(keys=keys, args=args, client=pipe)  # queues; the pipeline loads the script
    return list(await pipe.execute())
