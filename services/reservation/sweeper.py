"""The hold sweeper: sends `ExpireHold` for holds past their deadline (a timer of the worker)."""

from __future__ import annotations

import heapq
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.events import ExpireHold, Message, SeatHeld, utc_iso

if TYPE_CHECKING:
    from services.reservation.context import SeatRecords


@dataclass
class HoldSweeper:
    """Sends `ExpireHold` for holds past their deadline. The heap learns each hold as it is
    decided; after a recovery (the table changed under it) it is rebuilt from the table once."""

    deadlines: list[tuple[int, str, str]] = field(default_factory=list)  # (ms, seat, hold id)
    stale: bool = True

    def track(self, e: SeatHeld) -> None:
        heapq.heappush(self.deadlines, (e.hold_expires_at_ms, e.seat_key, e.reservation_id))

    def rebuild(self, seats: SeatRecords) -> None:
        self.deadlines = list(seats.holds())
        heapq.heapify(self.deadlines)
        self.stale = False

    def due(self, now: int) -> list[tuple[str, str]]:
        """(seat key, hold id) of holds past their deadline, removed from the heap."""
        due = []
        while self.deadlines and self.deadlines[0][0] <= now:
            _, key, hold_id = heapq.heappop(self.deadlines)
            due.append((key, hold_id))
        return due

    async def sweep(
        self, seats: SeatRecords, publish: Callable[[str, Message], Awaitable[Any]], now: int
    ) -> int:
        """Send `ExpireHold` for every hold due at `now` (ms) still held; how many were sent."""
        if self.stale:
            self.rebuild(seats)
        sent = 0
        for key, hold_id in self.due(now):
            record = seats.get(key)
            r = record.reservations.get(hold_id)
            if not record.seat.held_by(hold_id) or r is None:
                continue
            await publish(
                "seat.hold_expiry",
                ExpireHold(
                    event_id=f"expire:{hold_id}",
                    occurred_at=utc_iso(now),
                    reservation_id=hold_id,
                    concert_id=r.concert_id,
                    seat_id=r.seat_id,
                    user_id=r.user_id,
                ),
            )
            sent += 1
        return sent
