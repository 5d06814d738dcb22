"""Redis memory per waiting fan (the README's Redis layout section).

    python -m perf.waiter_memory [--fans 50000]

Starts an embedded Redis on loopback, puts a concert on sale, enters `--fans` fans with
13-character user ids through the queue's own store (the entry script the service runs), and
prints `used_memory` before and after, divided by the fans. Nothing is admitted (the gate is not
run), so every fan stays waiting. The Redis is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from prometheus_client import CollectorRegistry

from infra.embedded import start_redis
from services.queue.store import QueueStore
from shared.concerts import cache_concerts
from shared.redis_client import create_redis

CONCERT = "memory-bench"
BATCH = 500  # entries in flight at once


async def measure(address: str, fans: int) -> tuple[int, int]:
    """(used_memory before, after) `fans` entries."""
    redis = create_redis(f"redis://{address}/0", socket_timeout=5.0, max_connections=BATCH)
    store = QueueStore(redis, CollectorRegistry())
    try:
        await cache_concerts(redis, [(CONCERT, fans, 100)])  # on sale, as the catalog writes it
        await store.register_concert(CONCERT)
        before = int((await redis.info("memory"))["used_memory"])
        times = {"active_ttl_ms": 30_000, "heartbeat_ms": 3_600_000, "retention_s": 86_400}
        for start in range(0, fans, BATCH):
            users = (f"fan-{i:09d}" for i in range(start, min(fans, start + BATCH)))
            await asyncio.gather(*(store.enter(CONCERT, u, **times) for u in users))
        after = int((await redis.info("memory"))["used_memory"])
        return before, after
    finally:
        await redis.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fans", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="waiter-memory-") as workdir:
        server = start_redis(Path(workdir) / "redis")
        try:
            before, after = asyncio.run(measure(server.address, args.fans))
        finally:
            server.stop()
    per_fan = (after - before) / args.fans
    print(
        f"{args.fans} waiting fans (13-character ids): used_memory {before} -> {after} bytes, "
        f"{per_fan:.0f} bytes per fan, {1e9 / per_fan / 1e6:.1f} million fans per GB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
