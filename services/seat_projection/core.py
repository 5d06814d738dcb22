"""The seat map read model: pure folding of seat facts into per-seat status and per-concert counts.

Facts about one concert arrive on several topics, so their relative order is not guaranteed;
every seat fact carries the seat's version from its single writer, and a fact older than what the
map already shows is ignored. That also makes redelivered facts harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from shared.events import Message, SeatConfirmed, SeatHeld, SeatReleased

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
