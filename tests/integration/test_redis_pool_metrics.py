"""How full the Redis connection pools are (shared/compat.py), against the real Redis of
the session: standalone in `make test`, Cluster in `make test-redis-cluster`. The figures are
process-wide, so each test reads how they moved while it ran (pytest runs one test at a time)."""

from __future__ import annotations

import asyncio
import gc

from prometheus_client import CollectorRegistry
from redis import exceptions as rexc

from shared.compat import POOL_METRICS, CountedSentinelPool
from shared.redis_client import create_redis
from tests.support.queue import new_id

HOLD_S = 0.8  # each command holds its connection this long (a BLPOP on an empty list)


def figures() -> dict[str, float]:
    registry = CollectorRegistry()
    for metric in POOL_METRICS:
        registry.register(metric)
    names = ("connections_in_use", "max_connections", "waits_total", "exhausted_total")
    return {n: registry.get_sample_value(f"redis_pool_{n}") or 0.0 for n in names}


def since(before: dict[str, float]) -> dict[str, float]:
    return {n: v - before[n] for n, v in figures().items()}


async def test_connections_in_use_and_waits_are_counted_and_a_pool_that_stays_full_is_exhausted(
    redis_url: str,
) -> None:
    gc.collect()  # pools other tests left unreferenced leave the live total now, not below
    before = figures()
    client = create_redis(redis_url, socket_timeout=1.0, max_connections=1)
    key = f"{{{new_id('pool')}}}:empty"
    try:
        assert since(before)["max_connections"] == 1
        first = asyncio.create_task(client.blpop([key], timeout=HOLD_S))
        await asyncio.sleep(0.2)
        assert since(before)["connections_in_use"] == 1
        # The second waits 0.8 s and gets the connection; the third would wait 1.6 s, more than
        # the pool's 1 s timeout: a standalone pool gives up on it, a Cluster client queues it.
        queued = [asyncio.create_task(client.blpop([key], timeout=HOLD_S)) for _ in range(2)]
        results = await asyncio.gather(first, *queued, return_exceptions=True)
        delta = since(before)
        assert delta["waits_total"] == 2 and delta["connections_in_use"] == 0
        if redis_url.startswith("redis+cluster://"):
            assert results == [None, None, None] and delta["exhausted_total"] == 0
        else:
            assert results[:2] == [None, None]
            assert isinstance(results[2], rexc.ConnectionError)
            assert delta["exhausted_total"] == 1
    finally:
        await client.aclose()
    del client, first, queued, results
    gc.collect()
    assert since(before)["max_connections"] == 0  # a pool no longer referenced is not counted


def test_a_sentinel_primarys_pool_is_counted_too() -> None:
    client = create_redis(
        "redis+sentinel://127.0.0.1:1/ticketing/0", socket_timeout=0.1, max_connections=3
    )
    assert isinstance(client.connection_pool, CountedSentinelPool)
