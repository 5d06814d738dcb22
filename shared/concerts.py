"""The concerts' catalog cache in Redis, shared by the reservation service (which writes it) and
the waiting room (which admits entries only for a concert in it).

``concert:{c}`` (hash: seats, price) shares the concert's hash tag with its queue keys, so the
waiting room's entry script reads it on the same Cluster slot. Its source of truth is the
`concert.created` log (services/reservation/catalog.py): every reservation worker writes the
concerts it has read back into the cache, so a Redis that lost data (a failover, a restart
without the last second of its append-only file) heals within `CACHE_REFRESH_S`.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.redis_client import AnyRedis

CACHE_REFRESH_S = 10.0


def concert_key(concert_id: str) -> str:
    return f"concert:{{{concert_id}}}"


async def cache_concerts(redis: AnyRedis, concerts: Iterable[tuple[str, int, int]]) -> None:
    """Write (concert, seats, price) entries into the cache in one round trip per 500."""
    batch = list(concerts)
    for start in range(0, len(batch), 500):
        pipe = redis.pipeline(transaction=False)
        for concert_id, seats, price in batch[start : start + 500]:
            pipe.hset(concert_key(concert_id), mapping={"seats": seats, "price": price})
        await pipe.execute()
