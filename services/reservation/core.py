"""The seat state machine: pure `decide`, `evolve` and `step`, no I/O, no clock (time is passed in).

One seat has one writer (the seat agent, partitioned by seat), so these functions see every
message about a seat in order and need no locks. The hold id is the reservation id: a hold is
released or confirmed only by messages naming it, so stale expiries and late payments of another
reservation cannot touch a newer hold.

`step(record, message, now_ms)` is the whole seat agent without its I/O: the seat's record (the
seat, its reservations, the outputs not yet known to be past) in, the next record and the
outputs to publish out. The agent and the unit tests both call it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

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
from shared.topics import TOPIC_OF, key_of

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


def worth_waiting(status: str, seen: str) -> bool:
    """A long-poll that has seen `seen` waits while the status is still that, and never on a
    final status, which cannot change (it would only hold the request for its whole wait)."""
    return status == seen and status not in TERMINAL


def is_open(reservation: Reservation | None) -> bool:
    """Still counts against the user's hold limit."""
    return reservation is None or reservation.status in (PENDING, HELD)


# --- the seat record and one step of the seat agent ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Output:
    """One message to publish, encoded once: the bytes stored in the record are the bytes sent."""

    topic: str
    key: bytes
    value: bytes

    @classmethod
    def of(cls, m: SeatMessage) -> Output:
        topic = TOPIC_OF[type(m).__name__]
        return cls(topic, key_of(topic, m), m.to_bytes())


@dataclass(frozen=True, slots=True)
class Sent:
    """The outputs of one decision, kept until the offset of its cause is committed: a cause
    redelivered after a crash publishes them again (consumers de-duplicate by event id)."""

    source: str  # "topic:partition" of the cause
    offset: int
    outputs: tuple[Output, ...]


@dataclass(frozen=True, slots=True)
class SeatRecord:
    """Everything one seat's decisions need, stored as one changelog record per decision (so a
    crash keeps or loses the seat's and its reservation's halves of a decision together).

    `reservations` keeps the finished ones too, as their outcome: a client retry with the same
    Idempotency-Key carries the same reservation id and must not be decided again. `sent` keeps
    only the outputs whose cause may still be redelivered (see `prune`)."""

    seat: Seat = Seat()
    reservations: Mapping[str, Reservation] = field(default_factory=dict)
    sent: Mapping[str, Sent] = field(default_factory=dict)  # cause event id -> outputs


@dataclass(frozen=True, slots=True)
class Stepped:
    record: SeatRecord
    decided: tuple[SeatMessage, ...]  # new decisions; () for a duplicate or a stale message
    outputs: tuple[Output, ...]  # to publish once the record is durable (again, for a duplicate)
    closed: Reservation | None  # the reservation that stopped counting against the hold limit


def step(
    record: SeatRecord,
    m: SeatMessage,
    now_ms: int,
    *,
    hold_ms: int,
    source: str = "",
    offset: int = -1,
) -> Stepped:
    """One message through the seat's record. `source`/`offset` name where `m` was read, so its
    outputs can be pruned once that offset is committed."""
    before = record.reservations.get(m.reservation_id)
    decided = decide(record.seat, before, m, now_ms=now_ms, hold_ms=hold_ms)
    if not decided:
        again = record.sent.get(m.event_id)
        return Stepped(record, (), again.outputs if again else (), None)
    seat, after = record.seat, before
    for e in decided:
        seat = evolve_seat(seat, e)
        after = evolve_reservation(after, m, e)
    reservations = record.reservations
    if after is not None:
        reservations = {**reservations, after.reservation_id: after}
    outputs = tuple(Output.of(e) for e in decided if type(e).__name__ in TOPIC_OF)
    sent = record.sent
    if outputs:
        sent = {**sent, m.event_id: Sent(source, offset, outputs)}
    closed = after if after is not None and is_open(before) and not is_open(after) else None
    return Stepped(SeatRecord(seat, reservations, sent), tuple(decided), outputs, closed)


def prune(record: SeatRecord, committed: Mapping[str, int]) -> SeatRecord:
    """Drop the outputs whose cause lies before its partition's committed offset: it will not
    be delivered again."""
    kept = {cause: s for cause, s in record.sent.items() if s.offset >= committed.get(s.source, -1)}
    return record if len(kept) == len(record.sent) else dataclasses.replace(record, sent=kept)


# The record on the wire (orjson, compact lists). A reservation's concert and seat are the
# record's own, so they are not repeated per reservation.
_R_FIELDS = (
    "user_id",
    "status",
    "queue_ticket",
    "price",
    "reason",
    "hold_expires_at_ms",
    "payment_id",
    "refund_requested",
)


def record_to_bytes(record: SeatRecord) -> bytes:
    s = record.seat
    raw = orjson.dumps(
        {
            "seat": [s.status, s.reservation_id, s.hold_expires_at_ms, s.version],
            "r": {
                rid: [getattr(r, f) for f in _R_FIELDS] for rid, r in record.reservations.items()
            },
            "sent": {
                cause: [
                    x.source,
                    x.offset,
                    [[o.topic, o.key.decode(), orjson.Fragment(o.value)] for o in x.outputs],
                ]
                for cause, x in record.sent.items()
            },
        }
    )
    # A copy of exactly its length: orjson's result keeps its whole output buffer (measured
    # 16 KB for a 1.3 KB record), and every seat's record lives in memory as long as the seat.
    return bytes(memoryview(raw))


def record_from_bytes(raw: bytes | None, concert_id: str, seat_id: str) -> SeatRecord:
    if not raw:
        return SeatRecord()
    doc = orjson.loads(raw)
    status, holder, expires, version = doc["seat"]
    reservations = {
        rid: Reservation(rid, concert_id, seat_id, **dict(zip(_R_FIELDS, values, strict=True)))
        for rid, values in doc["r"].items()
    }
    sent = {
        cause: Sent(
            source, offset, tuple(Output(t, k.encode(), orjson.dumps(v)) for t, k, v in out)
        )
        for cause, (source, offset, out) in doc["sent"].items()
    }
    return SeatRecord(Seat(status, holder, expires, version), reservations, sent)
