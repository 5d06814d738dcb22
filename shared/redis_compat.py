"""How full this process's Redis connection pools are, which redis-py does not tell Prometheus.

redis-py's asyncio pools keep their counts in private attributes, and its own pool metrics go to
OpenTelemetry only. So the pools built by shared/redis_client.py are subclasses that count what
passes through the two public methods every command and pipeline uses: `get_connection` and
`release`. That relies on redis-py taking and returning every pooled connection through them,
checked on the version below (a deliberate upgrade trips the guard).

- `redis_pool_connections_in_use`: connections checked out now (all pools of the process);
- `redis_pool_max_connections`: how many they may hold together;
- `redis_pool_waits_total`: commands that found their pool full and waited for a connection;
- `redis_pool_exhausted_total`: commands that got none (the blocking pool's timeout, or the
  Sentinel pool's "Too many connections"): each is answered 503 by the services.

The Cluster client has a pool per node and no pool class to subclass; `QueuingRedisCluster`
(shared/redis_client.py) queues commands on a semaphore of its own and counts the same figures.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import redis
from prometheus_client import Counter, Gauge
from redis import exceptions as rexc
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.sentinel import SentinelConnectionPool

TESTED = ("8.",)
if not redis.__version__.startswith(TESTED):  # pragma: no cover - a deliberate upgrade trips this
    raise ImportError(
        f"shared/redis_compat.py counts redis-py's pool connections as checked on {TESTED}, not "
        f"on {redis.__version__}: re-check it (and tests/unit/test_redis_pool_metrics.py)"
    )

# Process-wide, like redis_out_of_memory_total: every service's /metrics shows them.
IN_USE = Gauge(
    "redis_pool_connections_in_use",
    "Redis connections checked out of this process's pools",
    registry=None,
)
MAX = Gauge(
    "redis_pool_max_connections",
    "Connections this process's live Redis pools may hold together",
    registry=None,
)
_LIMITS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()  # live pools only
MAX.set_function(lambda: sum(_LIMITS.values()))
WAITS = Counter(
    "redis_pool_waits_total",
    "Redis commands that found their connection pool full and waited for a connection",
    registry=None,
)
EXHAUSTED = Counter(
    "redis_pool_exhausted_total",
    "Redis commands that got no pooled connection in time (answered 503)",
    registry=None,
)
POOL_METRICS = (IN_USE, MAX, WAITS, EXHAUSTED)


def limit(pool: Any, max_connections: int) -> None:
    """Count `pool`'s connections in `redis_pool_max_connections` for as long as it lives."""
    _LIMITS[pool] = max_connections


class _Counted:
    """Counts the connections a redis-py asyncio pool hands out and takes back."""

    max_connections: int
    _out: set[int]

    def _start_counting(self) -> None:
        self._out = set()
        limit(self, self.max_connections)

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if len(self._out) >= self.max_connections:
            WAITS.inc()
        try:
            connection = await super().get_connection(*args, **kwargs)  # type: ignore[misc]
        except rexc.ConnectionError as exc:
            if isinstance(exc, rexc.MaxConnectionsError) or isinstance(
                exc.__cause__, asyncio.TimeoutError
            ):
                EXHAUSTED.inc()
            raise
        self._out.add(id(connection))
        IN_USE.inc()
        return connection

    async def release(self, connection: Any) -> None:
        # get_connection releases a connection it could not set up before handing it out.
        if id(connection) in self._out:
            self._out.discard(id(connection))
            IN_USE.dec()
        await super().release(connection)  # type: ignore[misc]


class CountedBlockingPool(_Counted, BlockingConnectionPool):
    """A standalone Redis's pool: a command waits up to its timeout for a connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start_counting()


class CountedSentinelPool(_Counted, SentinelConnectionPool):
    """A Sentinel primary's pool: a command finding it full fails at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._start_counting()
