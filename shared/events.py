"""The event catalog: every message on a Kafka topic, one immutable record each, in one place.

Wire format (orjson): ``{"type": "SeatHeld", "v": 1, "event_id": ..., "occurred_at": ..., ...}``.
Every record carries the common envelope (``event_id``, ``occurred_at`` as UTC ISO-8601 with
milliseconds, schema version ``v``) and the ids it concerns. Facts are named in the past tense;
the two commands (``ExpireHold``, ``RefundPayment``) are imperative and kept apart below.

Event ids are deterministic where an event is derived from another message (``<cause>:<n>``), so
a redelivered input yields byte-identical outputs that consumers recognise as duplicates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson

SCHEMA_VERSION = 1


def utc_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def seat_key(concert_id: str, seat_id: str) -> str:
    """The key of every seat-changing message: one seat, one partition, one writer."""
    return f"{concert_id}|{seat_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """The common envelope."""

    kind: ClassVar[str] = "message"
    event_id: str
    occurred_at: str

    def to_bytes(self) -> bytes:
        body = dataclasses.asdict(self)
        return orjson.dumps({"type": type(self).__name__, "v": SCHEMA_VERSION, **body})


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatMessage(Message):
    """Concerns one seat of one concert, and one reservation of it."""

    reservation_id: str
    concert_id: str
    seat_id: str
    user_id: str

    @property
    def seat_key(self) -> str:
        return seat_key(self.concert_id, self.seat_id)


# --- facts -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ConcertCreated(Message):
    concert_id: str
    seats: int
    price: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReservationRequested(SeatMessage):
    queue_ticket: int
    price: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatHeld(SeatMessage):
    hold_expires_at_ms: int
    version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReservationRejected(SeatMessage):
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatReleased(SeatMessage):
    reason: str  # "payment_failed" | "hold_expired"
    version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SeatConfirmed(SeatMessage):
    payment_id: str
    queue_ticket: int
    version: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentRequested(SeatMessage):
    payment_id: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentCompleted(SeatMessage):
    payment_id: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentFailed(SeatMessage):
    payment_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentRefunded(SeatMessage):
    payment_id: str
    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReservationRefunded(SeatMessage):
    """Internal to the seat agent: the reservation's refund went through (not published)."""

    payment_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentArrivedEarly(SeatMessage):
    """Internal to the seat agent: a completed payment for a request it has not decided (yet).

    Only a crash makes this happen: the killed worker showed the hold before its changelog
    record was durable, so the restarted worker decides the (uncommitted, redelivered) request
    again, and may read the payment first. The payment waits in the reservation record for that
    decision: confirm if the seat is still free, else refund. Not published."""

    payment_id: str
    amount: int


# --- commands ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpireHold(SeatMessage):
    """Sent by the hold sweeper when a hold's time is up; the seat agent checks the hold id."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RefundPayment(SeatMessage):
    """A completed payment whose seat could not be confirmed: give the money back."""

    payment_id: str
    amount: int
    reason: str


CATALOG: dict[str, type[Message]] = {
    cls.__name__: cls
    for cls in (
        ConcertCreated,
        ReservationRequested,
        SeatHeld,
        ReservationRejected,
        SeatReleased,
        SeatConfirmed,
        PaymentRequested,
        PaymentCompleted,
        PaymentFailed,
        PaymentRefunded,
        ReservationRefunded,
        PaymentArrivedEarly,
        ExpireHold,
        RefundPayment,
    )
}


FIELD_TYPES: dict[str, type] = {"str": str, "int": int}


class UnknownMessage(ValueError):
    """Not a message of this catalog (wrong type, version or fields)."""


def decode(raw: bytes | str) -> Message:
    try:
        doc: dict[str, Any] = orjson.loads(raw)
        cls = CATALOG[doc.pop("type")]
        version = doc.pop("v")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise UnknownMessage(f"undecodable message: {exc!r}") from None
    if type(version) is not int or version != SCHEMA_VERSION:
        raise UnknownMessage(f"{cls.__name__} schema version {version} is not supported")
    # The compatibility rule (shared/contracts.py): a field this consumer does not know was
    # added by a newer producer, which is not a breaking change: ignore it.
    known = {f.name for f in dataclasses.fields(cls)}
    try:
        message = cls(**{k: v for k, v in doc.items() if k in known})
    except TypeError as exc:
        raise UnknownMessage(f"{cls.__name__}: {exc}") from None
    for f in dataclasses.fields(message):
        expected = FIELD_TYPES[str(f.type)]
        if type(getattr(message, f.name)) is not expected:  # bool is not an int here
            raise UnknownMessage(f"{cls.__name__}.{f.name} must be {expected.__name__}")
    return message
