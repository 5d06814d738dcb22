"""The seat map read model: pure folding of seat facts into per-seat status and per-concert counts.

Facts about one concert arrive on several topics, so their relative order is not guaranteed;
every seat fact carries the seat's version from its single writer, and a fact older than what the
map already shows is ignored. That also makes redelivered facts harmless.
"""

from __future__ import annotations

import bisect
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


# --- the seat map's index, for paging -------------------------------------------------------


@dataclass
class StatusIndex:
    """Which seats of each concert are held and which sold, in seat-number order (every other
    seat is available), so a page of the map, filtered or not, costs its own length and not a
    scan of the concert. Seats are numbered 1..seats. Kept beside the seat table: set from each
    applied change, rebuilt from the table after a recovery."""

    by_concert: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def set(self, concert_id: str, seat: int, status: str) -> None:
        lists = self.by_concert.get(concert_id)
        if lists is None:
            if status not in (HELD, SOLD):
                return  # an available seat of an unindexed concert: nothing to record
            lists = self.by_concert[concert_id] = {HELD: [], SOLD: []}
        for name, numbers in lists.items():
            i = bisect.bisect_left(numbers, seat)
            present = i < len(numbers) and numbers[i] == seat
            if present and name != status:
                del numbers[i]
            elif not present and name == status:
                numbers.insert(i, seat)

    @classmethod
    def of(cls, seats: Iterable[tuple[str, SeatView]]) -> StatusIndex:
        """The index of a seat table's items ("concert|seat" -> view)."""
        index = cls()
        for key, view in seats:
            concert_id, _, seat = key.partition("|")
            if view.status != AVAILABLE and seat.isascii() and seat.isdigit():
                index.set(concert_id, int(seat), view.status)
        return index

    def page(
        self,
        concert_id: str,
        seats: int,
        status: str | None,
        after: int,
        limit: int,
        max_scan: int = 5000,
    ) -> tuple[list[tuple[int, str]], int | None]:
        """Up to `limit` (seat, status) after seat `after`, of `status` (any when None), and
        the seat to go on from (None: nothing of that status after this page). Held and sold
        pages read the index alone; an available page looks at `max_scan` seats at most, so a
        nearly sold-out concert answers a short page with where to go on from."""
        lists = self.by_concert.get(concert_id, {HELD: [], SOLD: []})
        if status in (HELD, SOLD):
            numbers = lists[status]
            i = bisect.bisect_right(numbers, after)
            chunk = numbers[i : i + limit]
            more = i + limit < len(numbers)
            return [(n, status) for n in chunk], (chunk[-1] if more and chunk else None)
        held, sold = lists[HELD], lists[SOLD]
        ih, js = bisect.bisect_right(held, after), bisect.bisect_right(sold, after)
        page: list[tuple[int, str]] = []
        n, last = after, min(seats, after + max_scan)
        while len(page) < limit and n < last:
            n += 1
            if ih < len(held) and held[ih] == n:
                ih += 1
                seat_status = HELD
            elif js < len(sold) and sold[js] == n:
                js += 1
                seat_status = SOLD
            else:
                seat_status = AVAILABLE
            if status is None or seat_status == status:
                page.append((n, seat_status))
        if status is None:
            return page, (n if n < seats else None)
        available_after = (seats - n) - (len(held) - ih) - (len(sold) - js)
        return page, (n if available_after > 0 else None)
