"""Pure payment policy: what a gateway's answer becomes, what is retried and when, and when a
person should look. No I/O; time is passed in. The shell (app.py) asks the gateway and obeys.

- A charge the gateway answered, either way, is final: `PaymentCompleted` or `PaymentFailed`.
- A refund is money owed back and is never given up on: a declined one is retried, backing off
  from `RETRY_S` to `MAX_BACKOFF_S`. It ends only as `PaymentRefunded`.
- A gateway that cannot be asked (its ledger unreachable) is waited out at a steady `RETRY_S`,
  so work resumes at once when it returns: a request is never dropped, never answered by guess.
- After `ALERT_AFTER` tries of one request, the retry is marked for on-call (logged as an error,
  once); retrying goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

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

RETRY_S = 0.5
MAX_BACKOFF_S = 30.0
ALERT_AFTER = 10  # tries of one request before a person should look

Request = PaymentRequested | RefundPayment
UNREACHABLE = None  # the outcome of an ask the gateway could not answer


@dataclass(frozen=True, slots=True)
class Publish:
    """Done: publish this fact."""

    fact: SeatMessage


@dataclass(frozen=True, slots=True)
class Retry:
    """Ask again after `after_s`; `why` is for the log, `alert` says a person should look."""

    after_s: float
    why: str
    alert: bool = False


Step = Publish | Retry


def decide(m: Request, outcome: Outcome | None, tries: int, now_ms: int) -> Step:
    """The next step for `m` after its gateway ask number `tries` (0 for the first) answered
    `outcome`, or could not be made (`UNREACHABLE`)."""
    alert = tries + 1 == ALERT_AFTER
    if outcome is UNREACHABLE:
        return Retry(RETRY_S, "gateway unreachable", alert)
    if isinstance(m, RefundPayment) and not outcome.ok:
        backoff = min(MAX_BACKOFF_S, RETRY_S * 2.0 ** min(tries, 16))
        return Retry(backoff, f"refund declined ({outcome.reason or 'no reason'})", alert)
    return Publish(result_of(m, outcome, now_ms))


def result_of(m: Request, outcome: Outcome, now_ms: int) -> SeatMessage:
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
