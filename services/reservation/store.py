"""Reservation state kept in Redis: the concert catalog and each user's open holds.

``concert:{c}`` (hash: seats, price): written once by POST /v1/concerts (HSETNX, so a second
create is a 409), cached in process since a concert's size and price never change.
``holds:{c}:<user>`` (zset: reservation id -> deadline ms): the user's pending and held
reservations, for MAX_HOLDS_PER_USER. The seat agent removes an entry when its reservation ends;
the deadline (hold time plus a margin) makes a missed removal heal itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Concert:
    concert_id: str
    seats: int
    price: int


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
        """False if the concert already exists."""
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
