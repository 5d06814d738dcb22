"""The seat state machine as properties (any interleaving, any order, a restart), its versions,
derived ids and stored record: pytest tests/unit/test_seat_core_properties.py"""

from __future__ import annotations

import tracemalloc
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.reservation.core import (
    AVAILABLE,
    CONFIRMED,
    EXPIRED,
    HELD,
    PAYMENT_FAILED,
    PENDING,
    REFUNDED,
    REJECTED,
    TERMINAL,
    Reservation,
    SeatRecord,
    decide,
    is_open,
    prune,
    record_from_bytes,
    record_to_bytes,
    step,
    worth_waiting,
)
from shared.events import (
    PaymentCompleted,
    PaymentFailed,
    RefundPayment,
    SeatConfirmed,
    SeatHeld,
    SeatMessage,
)
from tests.support.seat import (
    CONCERT,
    HOLD_MS,
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


class TestSeatVersions:
    def test_every_seat_change_adds_one(self) -> None:
        agent = SeatAgent()
        story = [
            (request("r1"), T0),
            (failed("r1"), T0),
            (request("r2"), T0),
            (expire("r2"), T0 + HOLD_MS),
            (request("r3"), T0 + HOLD_MS),
            (completed("r3"), T0 + HOLD_MS),
        ]
        versions = []
        for m, now in story:
            [e] = agent.send(m, now_ms=now)
            versions.append(getattr(e, "version"))  # noqa: B009
        assert versions == [1, 2, 3, 4, 5, 6]
        assert agent.seat.version == 6

    def test_decisions_that_change_no_seat_leave_the_version(self) -> None:
        agent = agent_after(request("r1"))
        agent.send(request("r2"))
        agent.send(completed("ghost"))
        assert agent.seat.version == 1


# (history before the cause, the cause): one case per kind of decision
DERIVING_CASES = [
    ((), request("r1")),
    ((request("r1"),), request("r2")),
    ((request("r1"),), completed("r1")),
    ((request("r1"),), failed("r1")),
    ((request("r1"),), expire("r1")),
    ((request("r1"), failed("r1")), completed("r1")),
    ((request("r1"), failed("r1"), completed("r1")), refunded("r1")),
]


class TestDerivedEventIds:
    @pytest.mark.parametrize(("history", "cause"), DERIVING_CASES)
    def test_are_the_cause_id_and_position(
        self, history: tuple[SeatMessage, ...], cause: SeatMessage
    ) -> None:
        agent = agent_after(*history)
        [e] = agent.send(cause, now_ms=T0 + HOLD_MS)
        assert e.event_id == f"{cause.event_id}:0"

    @pytest.mark.parametrize(("history", "cause"), DERIVING_CASES)
    def test_a_redelivery_at_another_time_decides_the_same_event_id(
        self, history: tuple[SeatMessage, ...], cause: SeatMessage
    ) -> None:
        agent = agent_after(*history)
        r = agent.reservations.get(cause.reservation_id)
        first = decide(agent.seat, r, cause, now_ms=T0 + HOLD_MS, hold_ms=HOLD_MS)
        again = decide(agent.seat, r, cause, now_ms=T0 + HOLD_MS, hold_ms=HOLD_MS)
        later = decide(agent.seat, r, cause, now_ms=T0 + 2 * HOLD_MS, hold_ms=HOLD_MS)
        assert [e.to_bytes() for e in first] == [e.to_bytes() for e in again]
        assert [e.event_id for e in later] == [e.event_id for e in first]


class TestOpenReservations:
    @pytest.mark.parametrize("status", [PENDING, HELD])
    def test_a_pending_or_held_reservation_counts_against_the_hold_limit(self, status: str) -> None:
        assert is_open(Reservation("r1", CONCERT, SEAT_ID, "u", status))

    @pytest.mark.parametrize("status", [CONFIRMED, REJECTED, EXPIRED, PAYMENT_FAILED, REFUNDED])
    def test_a_finished_reservation_does_not(self, status: str) -> None:
        assert not is_open(Reservation("r1", CONCERT, SEAT_ID, "u", status))

    def test_a_reservation_not_decided_yet_does(self) -> None:
        assert is_open(None)


# --- properties ----------------------------------------------------------------------------------

RESERVATIONS = 3
KINDS = ("request", "pay", "expire", "refund")
# How far the clock moves before a step: random, and the steps that reach a deadline exactly.
tick_st = st.one_of(st.sampled_from([0, 1, HOLD_MS - 1, HOLD_MS]), st.integers(0, 2 * HOLD_MS))
steps_st = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, RESERVATIONS - 1), tick_st),
    min_size=8,
    max_size=40,
)
# The gateway's one outcome per reservation (it de-duplicates by idempotency key).
outcomes_st = st.lists(st.booleans(), min_size=RESERVATIONS, max_size=RESERVATIONS)


@dataclass
class Run:
    agent: SeatAgent
    delivered: list[tuple[SeatMessage, int]]
    versions: list[int]


def deliver(steps: list[tuple[str, int, int]], outcomes: list[bool], *, causal: bool = True) -> Run:
    """Fold the steps through the core in the order given, duplicates and all.

    With `causal`, payments and hold expiries name a hold the seat agent has decided (the HTTP
    API takes a payment only for a held reservation; the sweeper only knows holds from SeatHeld),
    and refund results follow a RefundPayment: such a step picks its reservation among those.
    """
    agent = SeatAgent()
    held_ever: list[str] = []
    refund_asked: list[str] = []
    delivered: list[tuple[SeatMessage, int]] = []
    versions: list[int] = []
    now = T0
    for kind, n, tick in steps:
        now += tick
        if not causal or kind == "request":
            rid = f"r{n}"
        else:
            named = refund_asked if kind == "refund" else held_ever
            if not named:
                continue
            rid = named[n % len(named)]
        m: SeatMessage
        if kind == "request":
            m = request(rid, ticket=n)
        elif kind == "pay":
            m = completed(rid) if outcomes[int(rid[1:])] else failed(rid)
        elif kind == "expire":
            m = expire(rid)
        else:
            m = refunded(rid)
        for e in agent.send(m, now_ms=now):
            if isinstance(e, SeatHeld):
                held_ever.append(e.reservation_id)
            if isinstance(e, RefundPayment) and e.reservation_id not in refund_asked:
                refund_asked.append(e.reservation_id)
        delivered.append((m, now))
        versions.append(agent.seat.version)
        if causal:
            assert_seat_and_reservations_agree(agent)
    return Run(agent, delivered, versions)


def assert_seat_and_reservations_agree(agent: SeatAgent) -> None:
    holding = {rid for rid, r in agent.reservations.items() if r.status in (HELD, CONFIRMED)}
    if agent.seat.status == AVAILABLE:
        assert holding == set()
    else:
        assert holding == {agent.seat.reservation_id}
        expected = HELD if agent.seat.status == HELD else CONFIRMED
        assert agent.status(agent.seat.reservation_id) == expected


def count(events: list[SeatMessage], kind: type[SeatMessage]) -> Counter[str]:
    return Counter(e.reservation_id for e in events if isinstance(e, kind))


class TestAnyInterleavingOfOneSeatsMessages:
    @settings(max_examples=250, deadline=None)
    @given(steps_st, outcomes_st)
    def test_confirms_the_seat_to_at_most_one_reservation(
        self, steps: list[tuple[str, int, int]], outcomes: list[bool]
    ) -> None:
        run = deliver(steps, outcomes)
        confirmed = count(run.agent.decided, SeatConfirmed)
        assert sum(confirmed.values()) <= 1

    @settings(max_examples=250, deadline=None)
    @given(steps_st, outcomes_st)
    def test_every_completed_payment_ends_in_a_seat_or_exactly_one_refund(
        self, steps: list[tuple[str, int, int]], outcomes: list[bool]
    ) -> None:
        run = deliver(steps, outcomes)
        paid = {m.reservation_id for m, _ in run.delivered if isinstance(m, PaymentCompleted)}
        confirmed = count(run.agent.decided, SeatConfirmed)
        refunds = count(run.agent.decided, RefundPayment)
        for rid in paid:
            assert confirmed[rid] + refunds[rid] == 1, (rid, confirmed, refunds)
        assert set(confirmed) | set(refunds) <= paid

    @settings(max_examples=250, deadline=None)
    @given(steps_st, outcomes_st)
    def test_replaying_everything_again_decides_nothing_new(
        self, steps: list[tuple[str, int, int]], outcomes: list[bool]
    ) -> None:
        run = deliver(steps, outcomes)
        seat, reservations = run.agent.seat, dict(run.agent.reservations)
        for m, now in run.delivered:
            assert run.agent.send(m, now_ms=now) == [], m
        assert run.agent.seat == seat and run.agent.reservations == reservations

    @settings(max_examples=250, deadline=None)
    @given(steps_st, outcomes_st)
    def test_the_seat_version_never_goes_back(
        self, steps: list[tuple[str, int, int]], outcomes: list[bool]
    ) -> None:
        run = deliver(steps, outcomes)
        for m, now in run.delivered:  # a second delivery of everything, too
            run.agent.send(m, now_ms=now)
            run.versions.append(run.agent.seat.version)
        assert run.versions == sorted(run.versions)
        changes = [getattr(e, "version", None) for e in run.agent.decided]
        seat_versions = [v for v in changes if v is not None]
        assert seat_versions == list(range(1, len(seat_versions) + 1))


class TestMessagesInAnyOrderAtAll:
    """Even messages no real producer would send in that order cannot sell the seat twice."""

    @settings(max_examples=250, deadline=None)
    @given(steps_st, outcomes_st)
    def test_confirm_at_most_one_reservation_and_never_move_the_version_back(
        self, steps: list[tuple[str, int, int]], outcomes: list[bool]
    ) -> None:
        run = deliver(steps, outcomes, causal=False)
        assert sum(count(run.agent.decided, SeatConfirmed).values()) <= 1
        assert run.versions == sorted(run.versions)


class TestARestartedWorkerReadingPaymentsFirst:
    """After a crash, decisions that never reached the changelog are made again, and payment
    results (another topic) may be read before the redelivered requests they paid for."""

    @settings(max_examples=250, deadline=None)
    @given(steps_st, outcomes_st)
    def test_every_completed_payment_still_ends_in_a_seat_or_exactly_one_refund(
        self, steps: list[tuple[str, int, int]], outcomes: list[bool]
    ) -> None:
        first = deliver(steps, outcomes)
        results = (PaymentCompleted, PaymentFailed)
        payments = [(m, t) for m, t in first.delivered if isinstance(m, results)]
        others = [(m, t) for m, t in first.delivered if not isinstance(m, results)]
        restarted = SeatAgent()
        for m, now in payments + others:
            restarted.send(m, now_ms=now)
        paid = {m.reservation_id for m, _ in payments if isinstance(m, PaymentCompleted)}
        confirmed = count(restarted.decided, SeatConfirmed)
        refunds = count(restarted.decided, RefundPayment)
        assert sum(confirmed.values()) <= 1
        for rid in paid:
            assert confirmed[rid] + refunds[rid] == 1, (rid, confirmed, refunds)
        if restarted.seat.status != AVAILABLE:  # nobody keeps a seat they were refunded for
            assert not refunds[restarted.seat.reservation_id], (restarted.seat, refunds)


class TestTheSeatRecord:
    """What `step` keeps between messages, and what it sends."""

    def test_a_redelivered_cause_publishes_the_same_bytes_again(self) -> None:
        agent = SeatAgent()
        agent.send(request("r1"))
        again = step(agent.record, request("r1"), T0 + 5, hold_ms=HOLD_MS)
        assert again.decided == () and again.outputs == tuple(agent.outputs)

    def test_outputs_are_dropped_once_their_cause_is_committed(self) -> None:
        agent = agent_after(request("r1"))
        assert prune(agent.record, {"t:0": 0}).sent == agent.record.sent  # offset 0 not past
        pruned = prune(agent.record, {"t:0": 1})
        assert pruned.sent == {} and pruned.reservations == agent.reservations
        assert step(pruned, request("r1"), T0, hold_ms=HOLD_MS).outputs == ()

    def test_reports_the_reservation_that_stops_counting_against_the_hold_limit(self) -> None:
        agent = agent_after(request("r1"))
        assert step(agent.record, request("r2"), T0, hold_ms=HOLD_MS).closed.status == REJECTED
        paid = step(agent.record, completed("r1"), T0, hold_ms=HOLD_MS)
        assert paid.closed is not None and paid.closed.status == CONFIRMED
        assert step(SeatRecord(), request("r1"), T0, hold_ms=HOLD_MS).closed is None

    @settings(max_examples=150, deadline=None)
    @given(steps_st, outcomes_st)
    def test_survives_its_changelog_encoding_unchanged(
        self, steps: list[tuple[str, int, int]], outcomes: list[bool]
    ) -> None:
        record = deliver(steps, outcomes).agent.record
        assert record_from_bytes(record_to_bytes(record), CONCERT, SEAT_ID) == record

    def test_takes_about_its_own_length_in_memory(self) -> None:
        # Every seat's record stays in memory for as long as the seat: it must not keep the
        # encoder's whole output buffer.
        record = agent_after(request("r1"), completed("r1")).record
        length = len(record_to_bytes(record))
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            kept = [record_to_bytes(record) for _ in range(200)]
            per_record = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
        finally:
            tracemalloc.stop()
        assert per_record < length + 200, (per_record, length)

    def test_stays_small_on_a_seat_many_fans_tried(self) -> None:
        agent = agent_after(request("r0"), completed("r0"))
        for n in range(1, 200):
            agent.send(request(f"r{n}"))
        committed = prune(agent.record, {"t:0": 1})
        # each lost attempt leaves only its outcome: no outputs, no copies of the seat
        per_attempt = (len(record_to_bytes(committed)) - 200) / 200
        assert per_attempt < 120, per_attempt


class TestALongPoll:
    @pytest.mark.parametrize("status", sorted(TERMINAL))
    def test_never_waits_on_a_final_status(self, status: str) -> None:
        assert not worth_waiting(status, seen=status)

    def test_waits_while_the_status_is_the_one_already_seen(self) -> None:
        assert worth_waiting(PENDING, seen=PENDING)
        assert not worth_waiting(HELD, seen=PENDING)
