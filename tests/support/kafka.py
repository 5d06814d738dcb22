"""Reading topics from outside the services, as a downstream consumer would."""

from __future__ import annotations

from shared.events import SeatConfirmed
from shared.topics import partitions_of, topic_log

__all__ = ["assert_no_seat_sold_twice", "confirmed_seat_log", "partitions_of", "topic_log"]


async def confirmed_seat_log(brokers: str) -> list[SeatConfirmed]:
    """Every seat.confirmed fact ever published."""
    facts = await topic_log(brokers, "seat.confirmed")
    assert all(isinstance(f, SeatConfirmed) for f in facts)
    return [f for f in facts if isinstance(f, SeatConfirmed)]


def assert_no_seat_sold_twice(facts: list[SeatConfirmed]) -> None:
    """Rule 1, over the whole log: one reservation per seat, however often it was published."""
    owners: dict[tuple[str, str], set[str]] = {}
    for f in facts:
        owners.setdefault((f.concert_id, f.seat_id), set()).add(f.reservation_id)
    assert all(len(r) == 1 for r in owners.values()), {
        k: v for k, v in owners.items() if len(v) > 1
    }
