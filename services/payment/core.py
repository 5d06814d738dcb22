"""Pure payment decisions: which result event a gateway outcome becomes (no I/O, time passed in)."""

from __future__ import annotations

from services.payment.gateway import Outcome
from shared.events import (
    PaymentCompleted,
    PaymentFailed,
    PaymentRefunded,
    PaymentRequested,
    RefundPayment,
    SeatMessage,
    utc_iso,
)


def result_of(m: PaymentRequested | RefundPayment, outcome: Outcome, now_ms: int) -> SeatMessage:
    """The fact to publish; its id derives from the request's, so redelivery repeats it."""
    ids = {
        "event_id": f"{m.event_id}:0",
        "occurred_at": utc_iso(now_ms),
        "reservation_id": m.reservation_id,
        "concert_id": m.concert_id,
        "seat_id": m.seat_id,
        "user_id": m.user_id,
        "payment_id": m.payment_id,
    }
    if isinstance(m, RefundPayment):
        return PaymentRefunded(**ids, amount=m.amount)
    if outcome.ok:
        return PaymentCompleted(**ids, amount=m.amount)
    return PaymentFailed(**ids, reason=outcome.reason or "declined")
