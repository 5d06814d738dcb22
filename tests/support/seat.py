"""One seat's messages and a seat agent without its I/O, for the seat core's tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from services.reservation.core import (
    Output,
    Reservation,
    Seat,
    SeatRecord,
    step,
)
from services.reservation.ids import payment_id_for
from shared.events import (
    ExpireHold,
    PaymentCompleted,
    PaymentFailed,
    PaymentRefunded,
    ReservationRequested,
    SeatMessage,
    utc_iso,
)

CONCERT, SEAT_ID = "c1", "a-12"
HOLD_MS = 60_000
T0 = 1_790_000_000_000
PRICE = 120


def _about(rid: str) -> dict[str, str]:
    return {
        "occurred_at": utc_iso(T0),
        "reservation_id": rid,
        "concert_id": CONCERT,
        "seat_id": SEAT_ID,
        "user_id": f"user-of-{rid}",
    }


def request(rid: str, *, ticket: int = 7, price: int = PRICE) -> ReservationRequested:
    return ReservationRequested(
        event_id=f"req:{rid}", **_about(rid), queue_ticket=ticket, price=price
    )


def completed(rid: str, *, amount: int = PRICE) -> PaymentCompleted:
    return PaymentCompleted(
        event_id=f"paid:{rid}", **_about(rid), payment_id=payment_id_for(rid), amount=amount
    )


def failed(rid: str) -> PaymentFailed:
    return PaymentFailed(
        event_id=f"declined:{rid}",
        **_about(rid),
        payment_id=payment_id_for(rid),
        reason="card_declined",
    )


def expire(rid: str) -> ExpireHold:
    return ExpireHold(event_id=f"expire:{rid}", **_about(rid))


def refunded(rid: str) -> PaymentRefunded:
    return PaymentRefunded(
        event_id=f"refunded:{rid}", **_about(rid), payment_id=payment_id_for(rid), amount=PRICE
    )


@dataclass
class SeatAgent:
    """The seat agent without its I/O: `step` over one seat's record, every decision kept."""

    record: SeatRecord = field(default_factory=SeatRecord)
    decided: list[SeatMessage] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)

    def send(self, m: SeatMessage, now_ms: int = T0) -> list[SeatMessage]:
        stepped = step(self.record, m, now_ms, hold_ms=HOLD_MS, source="t:0", offset=0)
        self.record = stepped.record
        self.decided.extend(stepped.decided)
        self.outputs.extend(stepped.outputs)
        return list(stepped.decided)

    @property
    def seat(self) -> Seat:
        return self.record.seat

    @property
    def reservations(self) -> Mapping[str, Reservation]:
        return self.record.reservations

    def status(self, rid: str) -> str:
        return self.reservations[rid].status


def agent_after(*messages: SeatMessage) -> SeatAgent:
    agent = SeatAgent()
    for m in messages:
        agent.send(m)
    return agent
