"""Each user's open holds per concert, in Redis: written by the reservation service, read by the
queue service to complete a buyer's queue token once nothing of theirs is still open."""

from __future__ import annotations

from shared.redis_client import AnyRedis


def holds_key(concert_id: str, user_id: str) -> str:
    """zset reservation id -> deadline ms; tagged by concert like the waiting room's keys."""
    return f"holds:{{{concert_id}}}:{user_id}"


async def open_holds(redis: AnyRedis, concert_id: str, user_id: str) -> int:
    """Pending or held reservations of this user for this concert (past deadlines excluded)."""
    now_s, now_us = await redis.time()
    now_ms = int(now_s) * 1000 + int(now_us) // 1000
    return int(await redis.zcount(holds_key(concert_id, user_id), now_ms, "+inf"))
