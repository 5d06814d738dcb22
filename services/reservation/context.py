"""What the seat agent, the hold sweeper and the HTTP handlers of one worker share.

`Reservations.handle` is the seat agent's shell: decode is done by the caller; it loads the seat
and reservation, calls the pure core, writes the result and publishes what the core decided.

One table, `seat_to_state`, keyed by seat, holds the seat and every reservation of that seat:
each decision is one changelog record, so a crash can never keep the seat's half of a decision
and lose the reservation's (two tables did: a seat left held by a reservation that a restarted
worker then rejected as `seat_taken`). A reservation id carries its seat, so it finds its record.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from services.reservation.core import (
    HELD,
    Reservation,
    Seat,
    decide,
    evolve_reservation,
    evolve_seat,
    is_open,
    seat_from_dict,
    seat_to_dict,
)
from services.reservation.ids import ReservationIds
from services.reservation.settings import ReservationSettings
from services.reservation.store import ReservationStore
from shared.events import ExpireHold, Message, SeatHeld, SeatMessage, utc_iso
from shared.stream_metrics import StreamMetrics
from shared.topics import TOPIC_OF, key_of
from shared.waiting_room import WaitingRoom

log = logging.getLogger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Reservations:
    """Everything the agent, the sweeper and the HTTP handlers share, built once per worker."""

    settings: ReservationSettings
    app: faust.App
    store: ReservationStore
    room: WaitingRoom
    ids: ReservationIds
    metrics: StreamMetrics
    registry: CollectorRegistry
    topics: dict[str, Any]
    seat_to_state: Any  # seat key -> {"seat": Seat dict, "reservations": {id: Reservation dict}}
    waiters: dict[str, list[asyncio.Future[None]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    deadlines: list[tuple[int, str, str]] = field(default_factory=list)  # (ms, seat, hold id)

    async def publish(self, topic: str, m: Message) -> Any:
        """Send and return the future of the broker's acknowledgement."""
        fut = await self.topics[topic].send(key=key_of(topic, m), value=m.to_bytes())
        self.metrics.produced.labels(topic).inc()
        return fut

    def seat(self, key: str) -> Seat:
        return seat_from_dict((self.seat_to_state.get(key) or {}).get("seat"))

    def reservation(self, key: str, reservation_id: str) -> Reservation | None:
        doc = (self.seat_to_state.get(key) or {}).get("reservations", {}).get(reservation_id)
        return Reservation.from_dict(doc) if doc else None

    def notify(self, reservation_id: str) -> None:
        for fut in self.waiters.pop(reservation_id, []):
            if not fut.done():
                fut.set_result(None)

    async def handle(self, m: Message) -> None:
        """One message through the core; tables and outputs follow what it decided."""
        if not isinstance(m, SeatMessage):
            return
        state = self.seat_to_state.get(m.seat_key) or {}
        seat = seat_from_dict(state.get("seat"))
        reservations: dict[str, Any] = state.get("reservations", {})
        doc = reservations.get(m.reservation_id)
        before = Reservation.from_dict(doc) if doc else None
        now = now_ms()
        hold_ms = int(self.settings.seat_hold_s * 1000)
        decided = decide(seat, before, m, now_ms=now, hold_ms=hold_ms)
        if not decided:
            self.metrics.decisions.labels(f"{type(m).__name__}:ignored").inc()
            return
        after: Reservation | None = before
        for e in decided:
            seat = evolve_seat(seat, e)
            after = evolve_reservation(after, m, e)
            self.metrics.decisions.labels(type(e).__name__).inc()
            if isinstance(e, SeatHeld):
                heapq.heappush(self.deadlines, (e.hold_expires_at_ms, m.seat_key, e.reservation_id))
        if after is not None:
            reservations = {**reservations, after.reservation_id: after.to_dict()}
        self.seat_to_state[m.seat_key] = {"seat": seat_to_dict(seat), "reservations": reservations}
        if after is not None and is_open(before) and not is_open(after):
            await self.release_user_hold(after)
        for e in decided:
            topic = TOPIC_OF.get(type(e).__name__)
            if topic is not None:
                await self.publish(topic, e)
        self.notify(m.reservation_id)

    async def release_user_hold(self, r: Reservation) -> None:
        """Best effort: the hold-limit entry also lapses by itself at its deadline."""
        try:
            await self.store.release_hold(r.concert_id, r.user_id, r.reservation_id)
        except Exception:  # Redis down must not stop the seat agent; the entry will lapse
            log.warning("could not release hold %s of %s in Redis", r.reservation_id, r.user_id)

    def due_holds(self, now: int) -> list[tuple[str, str]]:
        """(seat key, hold id) of holds past their deadline, from the in-memory deadline heap."""
        due = []
        while self.deadlines and self.deadlines[0][0] <= now:
            _, key, hold_id = heapq.heappop(self.deadlines)
            due.append((key, hold_id))
        return due

    def rescan_holds(self) -> None:
        """Rebuild the deadline heap from the table (after recovery or a rebalance)."""
        seats = [(key, doc["seat"]) for key, doc in list(self.seat_to_state.items()) if doc]
        heap = [
            (seat["hold_expires_at_ms"], key, seat["reservation_id"])
            for key, seat in seats
            if seat.get("status") == HELD
        ]
        heapq.heapify(heap)
        self.deadlines = heap

    async def expire_due_holds(self) -> int:
        sent = 0
        now = now_ms()
        for key, hold_id in self.due_holds(now):
            seat = self.seat(key)
            r = self.reservation(key, hold_id)
            if not seat.held_by(hold_id) or r is None:
                continue
            await self.publish(
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
