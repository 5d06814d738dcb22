"""The payment core (services/payment/core.py): what a gateway's answer becomes, and the retry
policy, property-tested; and the shell obeying it. The gateways' own contract (idempotency) is
tests/integration/test_gateway_contract.py."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.payment.app import settle
from services.payment.core import (
    ALERT_AFTER,
    MAX_BACKOFF_S,
    RETRY_S,
    UNREACHABLE,
    Publish,
    Request,
    Retry,
    decide,
    result_of,
)
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
from tests.support.payment import InMemoryGateway

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


# --- the policy: what is retried, when, and when a person should look ---------------------

requests = st.sampled_from([payment_requested(), refund_requested()])
answers = st.one_of(
    st.none(), st.builds(Outcome, st.booleans(), st.sampled_from(["", "card_declined"]))
)


class TestThePolicy:
    @given(requests, st.lists(answers, max_size=40))
    def test_publishes_at_most_once_and_only_what_the_request_can_become(
        self, m: Request, history: list[Outcome | None]
    ) -> None:
        steps = [decide(m, outcome, tries, T0) for tries, outcome in enumerate(history)]
        published = [s.fact for s in steps if isinstance(s, Publish)]
        first = next((i for i, s in enumerate(steps) if isinstance(s, Publish)), len(steps))
        # Every step before the first publish is a retry; the shell stops at the first.
        assert all(isinstance(s, Retry) for s in steps[:first])
        allowed = (
            (PaymentRefunded,)
            if isinstance(m, RefundPayment)
            else (PaymentCompleted, PaymentFailed)
        )
        assert all(isinstance(f, allowed) and f.event_id == f"{m.event_id}:0" for f in published)

    @given(requests, st.integers(min_value=0, max_value=1000))
    def test_an_unreachable_gateway_is_waited_out_never_answered_by_guess(
        self, m: Request, tries: int
    ) -> None:
        step = decide(m, UNREACHABLE, tries, T0)
        assert isinstance(step, Retry) and step.after_s == RETRY_S

    @given(st.integers(min_value=0, max_value=1000))
    def test_a_declined_refund_is_retried_forever_backing_off_within_bounds(
        self, tries: int
    ) -> None:
        now = decide(refund_requested(), Outcome(False, "x"), tries, T0)
        later = decide(refund_requested(), Outcome(False, "x"), tries + 1, T0)
        assert isinstance(now, Retry) and isinstance(later, Retry)
        assert RETRY_S <= now.after_s <= later.after_s <= MAX_BACKOFF_S

    @given(requests, st.lists(st.none() | st.just(Outcome(False, "x")), max_size=60))
    def test_asks_a_person_to_look_exactly_once_however_long_it_retries(
        self, m: Request, history: list[Outcome | None]
    ) -> None:
        if isinstance(m, PaymentRequested):
            history = [None] * len(history)  # a charge retries only while unreachable
        alerts = [decide(m, o, tries, T0) for tries, o in enumerate(history)]
        assert sum(isinstance(s, Retry) and s.alert for s in alerts) == (
            1 if len(history) >= ALERT_AFTER else 0
        )

    def test_a_charge_the_gateway_answered_is_final_either_way(self) -> None:
        assert isinstance(decide(payment_requested(), Outcome(True), 0, T0), Publish)
        declined = decide(payment_requested(), Outcome(False, "card_declined"), 0, T0)
        assert isinstance(declined, Publish) and isinstance(declined.fact, PaymentFailed)


# --- the shell obeys: it asks again after an outage and publishes what the core says ------


class FlakyGateway(InMemoryGateway):
    """The in-memory provider behind a link that is down for the first `down` asks."""

    def __init__(self, down: int) -> None:
        super().__init__()
        self.down = down

    async def charge(self, idempotency_key: str, amount: int) -> Outcome:
        if self.down:
            self.down -= 1
            raise ConnectionError("gateway ledger unreachable")
        return await super().charge(idempotency_key, amount)


async def test_the_agent_waits_out_an_unreachable_gateway_then_publishes_its_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waited: list[float] = []

    async def no_wait(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", no_wait)
    fact = await settle(FlakyGateway(down=3), payment_requested())
    assert isinstance(fact, PaymentCompleted) and waited == [RETRY_S] * 3
