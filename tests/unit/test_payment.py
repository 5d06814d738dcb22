"""Payment decisions and the gateway's idempotency contract: pytest tests/unit/test_payment.py"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from services.payment.core import result_of
from services.payment.gateway import Outcome, PaymentGateway
from shared.events import (
    PaymentCompleted,
    PaymentFailed,
    PaymentRefunded,
    PaymentRequested,
    RefundPayment,
    SeatMessage,
    utc_iso,
)

T0 = 1_790_000_000_000
ABOUT = {
    "occurred_at": utc_iso(T0),
    "reservation_id": "r1.abc.def",
    "concert_id": "c1",
    "seat_id": "A-12",
    "user_id": "u1",
    "payment_id": "p1.0123456789abcdef01234567",
}


def payment_requested(amount: int = 120) -> PaymentRequested:
    return PaymentRequested(event_id="pay:r1.abc.def", **ABOUT, amount=amount)


def refund_requested(amount: int = 120) -> RefundPayment:
    return RefundPayment(
        event_id="paid:r1.abc.def:0", **ABOUT, amount=amount, reason="hold_expired"
    )


def ids_of(m: SeatMessage) -> tuple[str, str, str, str, str]:
    payment_id = str(getattr(m, "payment_id"))  # noqa: B009
    return (m.reservation_id, m.concert_id, m.seat_id, m.user_id, payment_id)


class TestACharge:
    def test_that_went_through_completes_the_payment(self) -> None:
        m = payment_requested(amount=130)
        result = result_of(m, Outcome(True), T0 + 5)
        assert isinstance(result, PaymentCompleted)
        assert result.amount == 130 and ids_of(result) == ids_of(m)
        assert result.occurred_at == utc_iso(T0 + 5)

    def test_that_was_declined_fails_the_payment_with_the_reason(self) -> None:
        m = payment_requested()
        result = result_of(m, Outcome(False, "card_declined"), T0)
        assert isinstance(result, PaymentFailed)
        assert result.reason == "card_declined" and ids_of(result) == ids_of(m)

    def test_declined_without_a_reason_fails_as_declined(self) -> None:
        result = result_of(payment_requested(), Outcome(False), T0)
        assert isinstance(result, PaymentFailed) and result.reason == "declined"


class TestARefund:
    def test_reports_the_money_given_back(self) -> None:
        m = refund_requested(amount=130)
        result = result_of(m, Outcome(True), T0)
        assert isinstance(result, PaymentRefunded)
        assert result.amount == 130 and ids_of(result) == ids_of(m)


class TestResultIds:
    @pytest.mark.parametrize(
        ("m", "outcome"),
        [
            (payment_requested(), Outcome(True)),
            (payment_requested(), Outcome(False, "card_declined")),
            (refund_requested(), Outcome(True)),
        ],
    )
    def test_derive_from_the_request_so_a_redelivery_repeats_them(
        self, m: PaymentRequested | RefundPayment, outcome: Outcome
    ) -> None:
        first = result_of(m, outcome, T0)
        later = result_of(m, outcome, T0 + 60_000)
        assert first.event_id == later.event_id == f"{m.event_id}:0"
        assert first.to_bytes() == result_of(m, outcome, T0).to_bytes()


@dataclass
class FakePaymentGateway(PaymentGateway):
    """An in-memory provider: the first outcome per idempotency key is the only one."""

    declined: set[str] = field(default_factory=set)  # keys whose card will be declined
    charges: dict[str, Outcome] = field(default_factory=dict)
    refunds: dict[str, Outcome] = field(default_factory=dict)
    charged: int = 0  # money movements, as the provider's statement would show them

    async def charge(self, idempotency_key: str, amount: int) -> Outcome:
        if idempotency_key not in self.charges:
            ok = idempotency_key not in self.declined
            self.charges[idempotency_key] = Outcome(ok, "" if ok else "card_declined")
            self.charged += ok
        return self.charges[idempotency_key]

    async def refund(self, idempotency_key: str, amount: int) -> Outcome:
        if idempotency_key not in self.refunds:
            self.refunds[idempotency_key] = Outcome(True)
            self.charged -= 1
        return self.refunds[idempotency_key]


async def pay(gateway: PaymentGateway, m: PaymentRequested, now_ms: int) -> SeatMessage:
    """What the payment agent does with one request (without Kafka)."""
    return result_of(m, await gateway.charge(m.reservation_id, m.amount), now_ms)


class TestTheSameIdempotencyKey:
    async def test_charges_once_however_often_the_request_comes(self) -> None:
        gateway = FakePaymentGateway()
        results = [await pay(gateway, payment_requested(), T0 + n) for n in range(3)]
        assert gateway.charged == 1
        assert {(type(r), r.event_id) for r in results} == {(PaymentCompleted, "pay:r1.abc.def:0")}

    async def test_keeps_a_declined_charge_declined(self) -> None:
        gateway = FakePaymentGateway(declined={"r1.abc.def"})
        results = [await pay(gateway, payment_requested(), T0) for _ in range(2)]
        assert all(isinstance(r, PaymentFailed) for r in results) and gateway.charged == 0

    async def test_refunds_once(self) -> None:
        gateway = FakePaymentGateway()
        await gateway.charge("r1", 120)
        outcomes = [await gateway.refund("r1", 120) for _ in range(2)]
        assert outcomes == [Outcome(True), Outcome(True)] and gateway.charged == 0


class TestDifferentIdempotencyKeys:
    async def test_are_charged_separately(self) -> None:
        gateway = FakePaymentGateway()
        await gateway.charge("r1", 120)
        await gateway.charge("r2", 120)
        assert gateway.charged == 2
