"""Each user's open holds per concert, in Redis: written by the reservation service, read by the
queue service (services/queue/store.py, COMPLETE_IF_SETTLED_LUA) to complete a buyer's queue
token once nothing of theirs is still open."""

from __future__ import annotations


def holds_key(concert_id: str, user_id: str) -> str:
    """zset reservation id -> deadline ms; tagged by concert like the waiting room's keys."""
    return f"holds:{{{concert_id}}}:{user_id}"
