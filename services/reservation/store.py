"""Reservation state kept in Redis: the concert creation lock and cache, and each user's holds.

``concert:{c}`` (hash: seats, price): taken by POST /v1/concerts with HSETNX before it publishes
`concert.created`, so two workers cannot both create one concert; a cache of the catalog, whose
source of truth is the log (services/reservation/catalog.py).
``holds:{c}:<user>`` (zset: reservation id -> deadline ms): the user's pending and held
reservations, for MAX_HOLDS_PER_USER. The seat agent removes an entry when its reservation ends;
the deadline (hold time plus a margin) makes a missed removal heal itself.
"""

from __future__ import annotations

from typing import Any

from services.reservation.catalog import Concert
from shared.errors import Unavailable
from shared.holds import holds_key
from shared.redis_client import UNAVAILABLE_ERRORS, AnyRedis

# KEYS: holds; ARGV: reservation id, deadline ms, max -> 1 taken, 0 over the limit
TAKE_HOLD_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""


def concert_key(concert_id: str) -> str:
    return f"concert:{{{concert_id}}}"


class ReservationStore:
    def __init__(self, redis: AnyRedis) -> None:
        self.redis = redis
        self._take: Any = redis.register_script(TAKE_HOLD_LUA)
        self._concerts: dict[str, Concert] = {}

    async def _do(self, coro: Any) -> Any:
        try:
            return await coro
        except UNAVAILABLE_ERRORS:
            raise Unavailable("reservation store (Redis) is unavailable, retry shortly") from None

    async def create_concert(self, concert: Concert) -> bool:
        """Take the creation lock; False if the concert is already there (or being created)."""
        key = concert_key(concert.concert_id)
        created = await self._do(self.redis.hsetnx(key, "seats", concert.seats))
        if created:
            await self._do(self.redis.hset(key, "price", concert.price))
        return bool(created)

    async def forget_concert(self, concert_id: str) -> None:
        await self._do(self.redis.delete(concert_key(concert_id)))

    async def concert(self, concert_id: str) -> Concert | None:
        cached = self._concerts.get(concert_id)
        if cached is not None:
            return cached
        doc = await self._do(self.redis.hgetall(concert_key(concert_id)))
        if not doc or "price" not in doc:
            return None
        concert = Concert(concert_id, int(doc["seats"]), int(doc["price"]))
        self._concerts[concert_id] = concert
        return concert

    async def take_hold(
        self, concert_id: str, user_id: str, reservation_id: str, *, ttl_ms: int, limit: int
    ) -> bool:
        key = holds_key(concert_id, user_id)
        return bool(await self._do(self._take(keys=[key], args=[reservation_id, ttl_ms, limit])))

    async def release_hold(self, concert_id: str, user_id: str, reservation_id: str) -> None:
        await self._do(self.redis.zrem(holds_key(concert_id, user_id), reservation_id))

    async def ping(self) -> bool:
        return bool(await self._do(self.redis.ping()))
