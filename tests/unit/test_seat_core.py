"""The seat state machine, rule by rule: pytest tests/unit/test_seat_core.py (its properties:
test_seat_core_properties.py)."""

from __future__ import annotations

import pytest

from services.reservation.core import (
    AVAILABLE,
    CONFIRMED,
    EXPIRED,
    HELD,
    PAYMENT_FAILED,
    PENDING,
    REFUNDED,
    REJECTED,
    SOLD,
    Seat,
)
from services.reservation.ids import payment_id_for
from shared.events import (
    PaymentArrivedEarly,
    RefundPayment,
    ReservationRefunded,
    ReservationRejected,
    SeatConfirmed,
    SeatHeld,
    SeatReleased,
)
from tests.support.seat import (
    CONCERT,
    HOLD_MS,
    PRICE,
    SEAT_ID,
    T0,
    SeatAgent,
    agent_after,
    completed,
    expire,
    failed,
    refunded,
    request,
)


class TestRequestingAnAvailableSeat:
    def test_holds_the_seat_until_the_hold_time_is_up(self) -> None:
        agent = SeatAgent()
        [held] = agent.send(request("r1"), now_ms=T0)
        assert isinstance(held, SeatHeld)
        assert (held.reservation_id, held.hold_expires_at_ms, held.version) == (
            "r1",
            T0 + HOLD_MS,
            1,
        )
        assert agent.seat == Seat(HELD, "r1", T0 + HOLD_MS, 1)

    def test_records_the_reservation_as_held_with_its_ticket_and_price(self) -> None:
        agent = SeatAgent()
        agent.send(request("r1", ticket=42, price=99), now_ms=T0)
        r = agent.reservations["r1"]
        assert (r.status, r.queue_ticket, r.price, r.hold_expires_at_ms, r.reason) == (
            HELD,
            42,
            99,
            T0 + HOLD_MS,
            None,
        )

    def test_names_the_seat_and_user_of_the_request(self) -> None:
        [held] = SeatAgent().send(request("r1"))
        assert (held.concert_id, held.seat_id, held.user_id) == (CONCERT, SEAT_ID, "user-of-r1")


class TestRequestingATakenSeat:
    def test_rejects_as_seat_taken_while_another_reservation_holds_it(self) -> None:
        agent = agent_after(request("r1"))
        [rejected] = agent.send(request("r2"))
        assert isinstance(rejected, ReservationRejected)
        assert (rejected.reservation_id, rejected.reason) == ("r2", "seat_taken")
        assert agent.seat.held_by("r1")
        assert (agent.status("r2"), agent.reservations["r2"].reason) == (REJECTED, "seat_taken")

    def test_rejects_as_seat_taken_once_the_seat_is_sold(self) -> None:
        agent = agent_after(request("r1"), completed("r1"))
        [rejected] = agent.send(request("r2"))
        assert isinstance(rejected, ReservationRejected) and rejected.reason == "seat_taken"
        assert (agent.seat.status, agent.seat.reservation_id) == (SOLD, "r1")

    def test_leaves_the_seat_and_its_version_alone(self) -> None:
        agent = agent_after(request("r1"))
        seat = agent.seat
        agent.send(request("r2"))
        assert agent.seat == seat


class TestRedeliveredRequest:
    def test_decides_nothing_while_the_hold_stands(self) -> None:
        agent = agent_after(request("r1"))
        assert agent.send(request("r1"), now_ms=T0 + 5) == []
        assert agent.seat.hold_expires_at_ms == T0 + HOLD_MS

    def test_decides_nothing_after_a_rejection(self) -> None:
        agent = agent_after(request("r1"), request("r2"))
        assert agent.send(request("r2")) == []

    def test_does_not_hold_the_seat_again_once_the_hold_was_released(self) -> None:
        agent = agent_after(request("r1"), failed("r1"))
        assert agent.seat.status == AVAILABLE
        assert agent.send(request("r1")) == []
        assert agent.seat.status == AVAILABLE and agent.status("r1") == PAYMENT_FAILED


class TestPaymentForTheHold:
    def test_confirms_the_seat_to_the_holder(self) -> None:
        agent = agent_after(request("r1", ticket=42))
        [confirmed] = agent.send(completed("r1"), now_ms=T0 + 1000)
        assert isinstance(confirmed, SeatConfirmed)
        assert (confirmed.reservation_id, confirmed.payment_id) == ("r1", payment_id_for("r1"))
        assert (confirmed.queue_ticket, confirmed.version) == (42, 2)
        assert agent.seat == Seat(SOLD, "r1", 0, 2)

    def test_marks_the_reservation_confirmed_with_its_payment(self) -> None:
        agent = agent_after(request("r1"), completed("r1"))
        r = agent.reservations["r1"]
        assert (r.status, r.payment_id, r.reason) == (CONFIRMED, payment_id_for("r1"), None)

    def test_confirms_a_late_payment_while_no_expiry_has_released_the_hold(self) -> None:
        # Only an ExpireHold naming the hold releases it; the deadline alone changes nothing.
        agent = agent_after(request("r1"))
        [confirmed] = agent.send(completed("r1"), now_ms=T0 + 10 * HOLD_MS)
        assert isinstance(confirmed, SeatConfirmed)

    def test_decides_nothing_when_the_payment_is_redelivered_after_confirmation(self) -> None:
        agent = agent_after(request("r1"), completed("r1"))
        seat = agent.seat
        assert agent.send(completed("r1")) == []
        assert agent.seat == seat and agent.status("r1") == CONFIRMED


class TestPaymentArrivingAfterExpiry:
    def test_asks_for_a_refund(self) -> None:
        agent = SeatAgent()
        agent.send(request("r1"), now_ms=T0)
        agent.send(expire("r1"), now_ms=T0 + HOLD_MS)
        [refund] = agent.send(completed("r1", amount=130))
        assert isinstance(refund, RefundPayment)
        assert (refund.reservation_id, refund.payment_id) == ("r1", payment_id_for("r1"))
        assert (refund.amount, refund.reason) == (130, "hold_expired")

    def test_records_that_the_refund_was_requested(self) -> None:
        agent = agent_after(request("r1"))
        agent.send(expire("r1"), now_ms=T0 + HOLD_MS)
        agent.send(completed("r1"))
        r = agent.reservations["r1"]
        assert (r.status, r.refund_requested, r.payment_id) == (EXPIRED, True, payment_id_for("r1"))

    def test_asks_for_nothing_more_when_the_payment_is_delivered_again(self) -> None:
        agent = agent_after(request("r1"))
        agent.send(expire("r1"), now_ms=T0 + HOLD_MS)
        agent.send(completed("r1"))
        assert agent.send(completed("r1")) == []

    def test_leaves_the_newer_hold_of_another_reservation_alone(self) -> None:
        agent = agent_after(request("r1"))
        agent.send(expire("r1"), now_ms=T0 + HOLD_MS)
        agent.send(request("r2"))
        seat = agent.seat
        [refund] = agent.send(completed("r1"))
        assert isinstance(refund, RefundPayment)
        assert agent.seat == seat and agent.seat.held_by("r2") and agent.status("r2") == HELD

    def test_asks_for_a_refund_when_the_seat_was_meanwhile_sold_to_another(self) -> None:
        agent = agent_after(request("r1"))
        agent.send(expire("r1"), now_ms=T0 + HOLD_MS)
        agent.send(request("r2"))
        agent.send(completed("r2"))
        [refund] = agent.send(completed("r1"))
        assert isinstance(refund, RefundPayment) and refund.reservation_id == "r1"
        assert (agent.seat.status, agent.seat.reservation_id) == (SOLD, "r2")


class TestPaymentArrivingAfterARelease:
    def test_asks_for_a_refund_naming_the_failed_hold(self) -> None:
        agent = agent_after(request("r1"), failed("r1"))
        [refund] = agent.send(completed("r1"))
        assert isinstance(refund, RefundPayment) and refund.reason == "hold_payment_failed"
        assert agent.reservations["r1"].refund_requested
        assert agent.send(completed("r1")) == []


class TestPaymentArrivingBeforeItsRequestIsDecided:
    """After a crash: the killed worker showed a hold that never reached the changelog, the
    buyer paid, and the restarted worker reads the payment before the redelivered request."""

    def test_keeps_the_payment_for_the_request_instead_of_refunding(self) -> None:
        agent = SeatAgent()
        [early] = agent.send(completed("r1"))
        assert isinstance(early, PaymentArrivedEarly) and early.payment_id == payment_id_for("r1")
        assert agent.seat == Seat()
        assert (agent.reservations["r1"].status, agent.reservations["r1"].payment_id) == (
            PENDING,
            payment_id_for("r1"),
        )
        assert agent.send(completed("r1")) == []

    def test_confirms_the_seat_at_once_when_the_request_finds_it_free(self) -> None:
        agent = agent_after(completed("r1"))
        held, confirmed = agent.send(request("r1", ticket=9))
        assert isinstance(held, SeatHeld) and isinstance(confirmed, SeatConfirmed)
        assert (confirmed.payment_id, confirmed.queue_ticket, confirmed.version) == (
            payment_id_for("r1"),
            9,
            2,
        )
        assert (agent.seat.status, agent.seat.reservation_id) == (SOLD, "r1")
        assert agent.reservations["r1"].status == CONFIRMED
        assert agent.send(request("r1")) == []

    def test_rejects_and_refunds_when_the_request_finds_the_seat_taken(self) -> None:
        agent = agent_after(request("r2"), completed("r1"))
        rejected, refund = agent.send(request("r1"))
        assert isinstance(rejected, ReservationRejected) and rejected.reason == "seat_taken"
        assert isinstance(refund, RefundPayment)
        assert (refund.payment_id, refund.amount, refund.reason) == (
            payment_id_for("r1"),
            PRICE,
            "seat_taken",
        )
        assert agent.reservations["r1"].refund_requested
        assert (agent.seat.status, agent.seat.reservation_id) == (HELD, "r2")


class TestPaymentFailure:
    def test_releases_the_hold(self) -> None:
        agent = agent_after(request("r1"))
        [released] = agent.send(failed("r1"))
        assert isinstance(released, SeatReleased)
        assert (released.reservation_id, released.reason, released.version) == (
            "r1",
            "payment_failed",
            2,
        )
        assert agent.seat == Seat(AVAILABLE, "", 0, 2)

    def test_marks_the_reservation_payment_failed(self) -> None:
        agent = agent_after(request("r1"), failed("r1"))
        r = agent.reservations["r1"]
        assert (r.status, r.reason) == (PAYMENT_FAILED, "payment_failed")

    def test_frees_the_seat_for_the_next_request(self) -> None:
        agent = agent_after(request("r1"), failed("r1"))
        [held] = agent.send(request("r2"))
        assert isinstance(held, SeatHeld) and held.version == 3

    def test_of_a_reservation_not_holding_the_seat_changes_nothing(self) -> None:
        agent = agent_after(request("r1"))
        seat = agent.seat
        assert agent.send(failed("r2")) == []
        assert agent.seat == seat

    def test_after_confirmation_changes_nothing(self) -> None:
        agent = agent_after(request("r1"), completed("r1"))
        assert agent.send(failed("r1")) == []
        assert agent.seat.status == SOLD and agent.status("r1") == CONFIRMED


class TestHoldExpiry:
    def test_ignores_an_expiry_naming_another_hold(self) -> None:
        agent = agent_after(request("r1"))
        assert agent.send(expire("r2"), now_ms=T0 + 2 * HOLD_MS) == []
        assert agent.seat.held_by("r1")

    def test_ignores_an_expiry_before_the_deadline(self) -> None:
        agent = agent_after(request("r1"))
        assert agent.send(expire("r1"), now_ms=T0 + HOLD_MS - 1) == []
        assert agent.seat.held_by("r1") and agent.status("r1") == HELD

    @pytest.mark.parametrize("late_ms", [0, 1, 3 * HOLD_MS])
    def test_releases_the_hold_at_or_after_the_deadline(self, late_ms: int) -> None:
        agent = agent_after(request("r1"))
        [released] = agent.send(expire("r1"), now_ms=T0 + HOLD_MS + late_ms)
        assert isinstance(released, SeatReleased)
        assert (released.reason, released.version) == ("hold_expired", 2)
        assert agent.seat == Seat(AVAILABLE, "", 0, 2)
        assert (agent.status("r1"), agent.reservations["r1"].reason) == (EXPIRED, "hold_expired")

    def test_decides_nothing_when_the_expiry_is_delivered_again(self) -> None:
        agent = agent_after(request("r1"))
        agent.send(expire("r1"), now_ms=T0 + HOLD_MS)
        assert agent.send(expire("r1"), now_ms=T0 + HOLD_MS) == []

    def test_ignores_an_expiry_of_a_sold_seat(self) -> None:
        agent = agent_after(request("r1"), completed("r1"))
        assert agent.send(expire("r1"), now_ms=T0 + 2 * HOLD_MS) == []
        assert agent.seat.status == SOLD


class TestRefundCompleted:
    @staticmethod
    def refund_requested() -> SeatAgent:
        agent = agent_after(request("r1"))
        agent.send(expire("r1"), now_ms=T0 + HOLD_MS)
        agent.send(completed("r1"))
        return agent

    def test_marks_the_reservation_refunded(self) -> None:
        agent = self.refund_requested()
        seat = agent.seat
        [done] = agent.send(refunded("r1"))
        assert isinstance(done, ReservationRefunded) and done.payment_id == payment_id_for("r1")
        r = agent.reservations["r1"]
        assert (r.status, r.reason) == (REFUNDED, "payment_refunded")
        assert agent.seat == seat

    def test_decides_nothing_when_the_refund_is_delivered_again(self) -> None:
        agent = self.refund_requested()
        agent.send(refunded("r1"))
        assert agent.send(refunded("r1")) == []

    def test_ignores_a_refund_of_an_unknown_reservation(self) -> None:
        assert SeatAgent().send(refunded("ghost")) == []
