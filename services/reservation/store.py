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
from shared.concerts import cache_concerts, concert_key
from shared.holds import holds_key
from shared.redis_client import UNAVAILABLE_ERRORS, AnyRedis, read_lua, unavailable
from shared.tokens import TokenClaims
from shared.waiting_room import (
    ALLOW_OOM,
    LUA_PRELUDE,
    TOUCH_FN,
    TokenState,
    queue_keys,
    token_state,
)

# One round trip per reservation request: the token check, then a hold slot (lua/reserve.lua).
RESERVE_LUA = ALLOW_OOM + LUA_PRELUDE + TOUCH_FN + read_lua(__file__, "reserve")


class ReservationStore:
    def __init__(self, redis: AnyRedis) -> None:
        self.redis = redis
        self._reserve: Any = redis.register_script(RESERVE_LUA)
        self.scripts = [self._reserve]
        self._concerts: dict[str, Concert] = {}

    async def _do(self, coro: Any) -> Any:
        try:
            return await coro
        except UNAVAILABLE_ERRORS as exc:
            raise unavailable(exc, "the reservation store (Redis)") from None

    async def create_concert(self, concert: Concert) -> bool:
        """Take the creation lock; False if the concert is already there (or being created)."""
        key = concert_key(concert.concert_id)
        created = await self._do(self.redis.hsetnx(key, "seats", concert.seats))
        if created:
            await self._do(self.redis.hset(key, "price", concert.price))
        return bool(created)

    async def cache(self, concerts: list[Concert]) -> None:
        """Write the catalog's concerts back into Redis (shared.concerts)."""
        await self._do(
            cache_concerts(self.redis, [(c.concert_id, c.seats, c.price) for c in concerts])
        )

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
        self,
        claims: TokenClaims,
        touch_args: list[Any],
        reservation_id: str,
        *,
        ttl_ms: int,
        limit: int,
    ) -> tuple[TokenState, bool]:
        """The token's state and, if it is active, whether a hold slot was taken (False: the
        user holds `limit` already)."""
        keys = [*queue_keys(claims.concert_id), holds_key(claims.concert_id, claims.user_id)]
        r = await self._do(
            self._reserve(keys=keys, args=[*touch_args, reservation_id, ttl_ms, limit])
        )
        return token_state(claims, r), bool(r[5])

    async def release_hold(self, concert_id: str, user_id: str, reservation_id: str) -> None:
        await self.release_holds([(concert_id, user_id, reservation_id)])

    async def release_holds(self, holds: list[tuple[str, str, str]]) -> None:
        """Free hold slots, (concert, user, reservation id) each, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for concert_id, user_id, reservation_id in holds:
            pipe.zrem(holds_key(concert_id, user_id), reservation_id)
        await self._do(pipe.execute())

    async def ping(self) -> bool:
        return bool(await self._do(self.redis.ping()))
