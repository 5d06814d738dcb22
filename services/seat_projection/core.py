"""The seat map read model: pure folding of seat facts into per-seat status and per-concert counts.

Facts about one concert arrive on several topics, so their relative order is not guaranteed;
every seat fact carries the seat's version from its single writer, and a fact older than what the
map already shows is ignored. That also makes redelivered facts harmless.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from shared.events import (
    ConcertCreated,
    Message,
    SeatConfirmed,
    SeatHeld,
    SeatMessage,
    SeatReleased,
    seat_key,
)

AVAILABLE, HELD, SOLD = "available", "held", "sold"


@dataclass(frozen=True, slots=True)
class Counts:
    seats: int = 0
    held: int = 0
    sold: int = 0

    @property
    def available(self) -> int:
        return max(0, self.seats - self.held - self.sold)

    def moved(self, old: str, new: str) -> Counts:
        held = self.held - (old == HELD) + (new == HELD)
        sold = self.sold - (old == SOLD) + (new == SOLD)
        return replace(self, held=held, sold=sold)


@dataclass(frozen=True, slots=True)
class SeatView:
    status: str = AVAILABLE
    version: int = 0


def status_after(fact: Message) -> str | None:
    if isinstance(fact, SeatHeld):
        return HELD
    if isinstance(fact, SeatReleased):
        return AVAILABLE
    if isinstance(fact, SeatConfirmed):
        return SOLD
    return None


def apply(seat: SeatView, counts: Counts, fact: Message) -> tuple[SeatView, Counts] | None:
    """The seat and its concert's counts after `fact`; None if the fact changes nothing."""
    new = status_after(fact)
    version = getattr(fact, "version", 0)
    if new is None or version <= seat.version:
        return None
    return SeatView(new, version), counts.moved(seat.status, new)


@dataclass
class Changes:
    """What a batch of facts changes: each seat and each concert's counts written once."""

    seats: dict[str, SeatView] = field(default_factory=dict)  # "concert|seat" -> view
    counts: dict[str, Counts] = field(default_factory=dict)  # concert -> counts
    ignored: int = 0  # stale or duplicate facts


def fold(
    facts: Iterable[Message],
    seat_of: Callable[[str], SeatView],
    counts_of: Callable[[str], Counts],
) -> Changes:
    """Fold facts, in order, over the map as `seat_of`/`counts_of` read it."""
    out = Changes()
    for fact in facts:
        if isinstance(fact, ConcertCreated):
            counts = out.counts.get(fact.concert_id) or counts_of(fact.concert_id)
            if counts.seats != fact.seats:
                out.counts[fact.concert_id] = replace(counts, seats=fact.seats)
            continue
        if not isinstance(fact, SeatMessage):
            continue
        key = seat_key(fact.concert_id, fact.seat_id)
        seat = out.seats.get(key) or seat_of(key)
        counts = out.counts.get(fact.concert_id) or counts_of(fact.concert_id)
        changed = apply(seat, counts, fact)
        if changed is None:
            out.ignored += 1
            continue
        out.seats[key], out.counts[fact.concert_id] = changed
    return out
