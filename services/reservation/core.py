"""The seat state machine: pure `decide` and `evolve`, no I/O, no clock (time is passed in).

One seat has one writer (the seat agent, partitioned by seat), so these functions see every
message about a seat in order and need no locks. The hold id is the reservation id: a hold is
released or confirmed only by messages naming it, so stale expiries and late payments of another
reservation cannot touch a newer hold.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from shared.events import (
    ExpireHold,
    Message,
    PaymentArrivedEarly,
    PaymentCompleted,
    PaymentFailed,
    PaymentRefunded,
    RefundPayment,
    ReservationRefunded,
    ReservationRejected,
    ReservationRequested,
    SeatConfirmed,
    SeatHeld,
    SeatMessage,
    SeatReleased,
    utc_iso,
)

AVAILABLE, HELD, SOLD = "available", "held", "sold"
PENDING, CONFIRMED, REJECTED = "pending", "confirmed", "rejected"
EXPIRED, PAYMENT_FAILED, REFUNDED = "expired", "payment_failed", "refunded"
TERMINAL = frozenset({CONFIRMED, REJECTED, EXPIRED, PAYMENT_FAILED, REFUNDED})
STATUSES = (PENDING, HELD, *sorted(TERMINAL))


@dataclass(frozen=True, slots=True)
class Seat:
    status: str = AVAILABLE
    reservation_id: str = ""  # the hold id / buyer's reservation while held or sold
    hold_expires_at_ms: int = 0
    version: int = 0

    def held_by(self, reservation_id: str) -> bool:
        return self.status == HELD and self.reservation_id == reservation_id


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: str
    concert_id: str
    seat_id: str
    user_id: str
    status: str
    queue_ticket: int = 0
    price: int = 0
    reason: str | None = None
    hold_expires_at_ms: int = 0
    payment_id: str | None = None
    refund_requested: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Reservation:
        return cls(**doc)


def seat_from_dict(doc: dict[str, Any] | None) -> Seat:
    return Seat(**doc) if doc else Seat()


def seat_to_dict(seat: Seat) -> dict[str, Any]:
    return dataclasses.asdict(seat)


def _ids(m: SeatMessage, n: int, now_ms: int) -> dict[str, Any]:
    return {
        "event_id": f"{m.event_id}:{n}",
        "occurred_at": utc_iso(now_ms),
        "reservation_id": m.reservation_id,
        "concert_id": m.concert_id,
        "seat_id": m.seat_id,
        "user_id": m.user_id,
    }


def _released(m: SeatMessage, seat: Seat, reason: str, now_ms: int) -> SeatReleased:
    return SeatReleased(**_ids(m, 0, now_ms), reason=reason, version=seat.version + 1)


def decide(
    seat: Seat, reservation: Reservation | None, m: Message, *, now_ms: int, hold_ms: int
) -> list[SeatMessage]:
    """What happens to this seat on message `m`; [] for duplicates and stale messages."""
    if isinstance(m, ReservationRequested):
        if reservation is not None and reservation.status != PENDING:
            return []  # redelivered request: already decided
        paid = reservation  # not None only when its payment arrived first (after a crash)
        if seat.status == AVAILABLE:
            held = SeatHeld(
                **_ids(m, 0, now_ms), hold_expires_at_ms=now_ms + hold_ms, version=seat.version + 1
            )
            if paid is None or paid.payment_id is None:
                return [held]
            confirmed = SeatConfirmed(
                **_ids(m, 1, now_ms),
                payment_id=paid.payment_id,
                queue_ticket=m.queue_ticket,
                version=seat.version + 2,
            )
            return [held, confirmed]
        rejected = ReservationRejected(**_ids(m, 0, now_ms), reason="seat_taken")
        if paid is None or paid.payment_id is None:
            return [rejected]
        refund = RefundPayment(
            **_ids(m, 1, now_ms), payment_id=paid.payment_id, amount=paid.price, reason="seat_taken"
        )
        return [rejected, refund]
    if isinstance(m, PaymentCompleted):
        if seat.held_by(m.reservation_id):
            ticket = reservation.queue_ticket if reservation else 0
            return [
                SeatConfirmed(
                    **_ids(m, 0, now_ms),
                    payment_id=m.payment_id,
                    queue_ticket=ticket,
                    version=seat.version + 1,
                )
            ]
        if seat.status == SOLD and seat.reservation_id == m.reservation_id:
            return []  # redelivered payment of the confirmed buyer
        if reservation is None:  # its request is still to be decided again (see the event)
            return [
                PaymentArrivedEarly(**_ids(m, 0, now_ms), payment_id=m.payment_id, amount=m.amount)
            ]
        if reservation.refund_requested or reservation.status == PENDING:
            return []  # refund already on its way, or the payment already waits for its request
        reason = f"hold_{reservation.status}"
        return [
            RefundPayment(
                **_ids(m, 0, now_ms), payment_id=m.payment_id, amount=m.amount, reason=reason
            )
        ]
    if isinstance(m, PaymentFailed):
        if seat.held_by(m.reservation_id):
            return [
                SeatReleased(**_ids(m, 0, now_ms), reason=PAYMENT_FAILED, version=seat.version + 1)
            ]
        return []
    if isinstance(m, ExpireHold):
        if seat.held_by(m.reservation_id) and now_ms >= seat.hold_expires_at_ms:
            return [
                SeatReleased(**_ids(m, 0, now_ms), reason="hold_expired", version=seat.version + 1)
            ]
        return []
    if isinstance(m, PaymentRefunded):
        if reservation is not None and reservation.status != REFUNDED:
            return [ReservationRefunded(**_ids(m, 0, now_ms), payment_id=m.payment_id)]
        return []
    return []


def evolve_seat(seat: Seat, e: SeatMessage) -> Seat:
    if isinstance(e, SeatHeld):
        return Seat(HELD, e.reservation_id, e.hold_expires_at_ms, e.version)
    if isinstance(e, SeatReleased):
        return Seat(AVAILABLE, "", 0, e.version)
    if isinstance(e, SeatConfirmed):
        return Seat(SOLD, e.reservation_id, 0, e.version)
    return seat


def evolve_reservation(
    reservation: Reservation | None, cause: Message, e: SeatMessage
) -> Reservation | None:
    """The reservation record after event `e` (decided on message `cause`)."""
    if isinstance(e, SeatHeld | ReservationRejected):
        assert isinstance(cause, ReservationRequested)
        held = isinstance(e, SeatHeld)
        return Reservation(
            reservation_id=e.reservation_id,
            concert_id=e.concert_id,
            seat_id=e.seat_id,
            user_id=e.user_id,
            status=HELD if held else REJECTED,
            queue_ticket=cause.queue_ticket,
            price=cause.price,
            reason=None if held else e.reason,  # type: ignore[union-attr]
            hold_expires_at_ms=e.hold_expires_at_ms if isinstance(e, SeatHeld) else 0,
        )
    if isinstance(e, PaymentArrivedEarly):
        return Reservation(
            reservation_id=e.reservation_id,
            concert_id=e.concert_id,
            seat_id=e.seat_id,
            user_id=e.user_id,
            status=PENDING,
            price=e.amount,
            payment_id=e.payment_id,
        )
    if reservation is None:
        return None
    if isinstance(e, SeatReleased):
        status = PAYMENT_FAILED if e.reason == PAYMENT_FAILED else EXPIRED
        return dataclasses.replace(reservation, status=status, reason=e.reason)
    if isinstance(e, SeatConfirmed):
        return dataclasses.replace(
            reservation, status=CONFIRMED, reason=None, payment_id=e.payment_id
        )
    if isinstance(e, RefundPayment):
        return dataclasses.replace(reservation, refund_requested=True, payment_id=e.payment_id)
    if isinstance(e, ReservationRefunded):
        return dataclasses.replace(
            reservation, status=REFUNDED, reason="payment_refunded", payment_id=e.payment_id
        )
    return reservation


def is_open(reservation: Reservation | None) -> bool:
    """Still counts against the user's hold limit."""
    return reservation is None or reservation.status in (PENDING, HELD)
