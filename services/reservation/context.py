"""What the seat agent, the hold sweeper and the HTTP handlers of one worker share.

`Reservations.handle` is the seat agent's shell: decode is done by the caller; it loads the seat
and reservation, calls the pure core, writes the result and hands what the core decided to the
`Outbox`, which publishes it once the write is durable.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from services.reservation.catalog import Catalog
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
from shared.events import ExpireHold, Message, SeatHeld, SeatMessage, decode, utc_iso
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
    catalog: Catalog
    room: WaitingRoom
    ids: ReservationIds
    metrics: StreamMetrics
    registry: CollectorRegistry
    topics: dict[str, Any]
    # seat key -> {"seat": Seat dict, "reservations": {id: Reservation dict},
    #              "sent": {id: {cause event id: [outputs as JSON]}}}
    seat_to_state: Any
    waiters: dict[str, list[asyncio.Future[None]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    deadlines: list[tuple[int, str, str]] = field(default_factory=list)  # (ms, seat, hold id)
    background: set[asyncio.Future[Any]] = field(default_factory=set)  # late undos in flight
    _outbox: Outbox | None = None

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

    async def handle(self, m: Message, done: Callable[[], Any] = lambda: None) -> None:
        """One message through the core; the seat record and outputs follow what it decided.

        Outputs leave only once the record holding the decision is acknowledged by the broker
        (`Outbox`): a crash loses a decision and its outputs together, and never leaves outputs
        of a decision the restarted worker does not know (it might decide differently). The
        record keeps each decision's outputs, so a message redelivered after a crash publishes
        them again (consumers de-duplicate by event id and seat version). `done` (the event's
        ack) is called once the outputs are handed to the producer."""
        if not isinstance(m, SeatMessage):
            await self.outbox.put(None, [], None, done)
            return
        state = self.seat_to_state.get(m.seat_key) or {}
        seat = seat_from_dict(state.get("seat"))
        reservations: dict[str, Any] = state.get("reservations", {})
        sent: dict[str, dict[str, list[str]]] = state.get("sent", {})  # id -> cause -> outputs
        doc = reservations.get(m.reservation_id)
        before = Reservation.from_dict(doc) if doc else None
        now = now_ms()
        hold_ms = int(self.settings.seat_hold_s * 1000)
        decided = decide(seat, before, m, now_ms=now, hold_ms=hold_ms)
        if not decided:
            self.metrics.decisions.labels(f"{type(m).__name__}:ignored").inc()
            again = [decode(raw) for raw in sent.get(m.reservation_id, {}).get(m.event_id, [])]
            await self.outbox.put(self.last_write(), again, None, done)
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
        outputs: list[Message] = [e for e in decided if type(e).__name__ in TOPIC_OF]
        if outputs:
            causes = {
                **sent.get(m.reservation_id, {}),
                m.event_id: [e.to_bytes().decode() for e in outputs],
            }
            sent = {**sent, m.reservation_id: causes}
        self.seat_to_state[m.seat_key] = {
            "seat": seat_to_dict(seat),
            "reservations": reservations,
            "sent": sent,
        }
        if after is not None and is_open(before) and not is_open(after):
            await self.release_user_hold(after)
        await self.outbox.put(self.last_write(), outputs, m.reservation_id, done)

    def last_write(self) -> Any:
        """The broker's acknowledgement of the latest seat record written (a future)."""
        return self.seat_to_state.last_write

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            self._outbox = Outbox(self)
        return self._outbox

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


class Outbox:
    """Publishes each decision's outputs once its seat record is durable, in decision order.

    The seat agent hands over (write, outputs, reservation id, ack) and goes on with the next
    message at once; one task waits for each write's acknowledgement, publishes the outputs,
    wakes long-polling readers and acks the event. Waiting inline instead would cost the
    agent one broker round trip per message. The queue is bounded: a slow broker slows the
    agent down instead of growing memory."""

    def __init__(self, ctx: Reservations, size: int = 10_000) -> None:
        self.ctx = ctx
        self.queue: asyncio.Queue[tuple[Any, list[Message], str | None, Callable[[], Any]]] = (
            asyncio.Queue(size)
        )
        self.task = asyncio.ensure_future(self.run())

    async def put(
        self, write: Any, outputs: list[Message], rid: str | None, done: Callable[[], Any]
    ) -> None:
        await self.queue.put((write, outputs, rid, done))

    async def run(self) -> None:
        try:
            while True:
                write, outputs, rid, done = await self.queue.get()
                if write is not None:
                    await write
                for e in outputs:
                    await self.ctx.publish(TOPIC_OF[type(e).__name__], e)
                if rid is not None:
                    self.ctx.notify(rid)
                done()
        except Exception as exc:  # a decision that cannot be made durable: stop the worker
            log.critical("seat records or outputs cannot be sent (%r); stopping", exc)
            await self.ctx.app.crash(exc)
