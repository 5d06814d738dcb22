"""The topic catalog: name, key, partitions, cleanup policy, producer and consumers of every topic.

Co-partitioning: every topic the seat agent consumes is keyed by the seat key
(``concert_id|seat_id``) and has ``SEAT_PARTITIONS`` partitions, so all messages about one seat
reach the same partition and its single writer. Seat facts for the read model are keyed by
``concert_id`` so the projection sees each concert's facts in order on one partition.
Changelog topics of Faust tables are created by Faust, compacted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    messages: tuple[str, ...]
    producer: str
    consumers: tuple[str, ...]
    group: str  # co-partitioning group: topics of one group share a partition count
    cleanup: str = "delete"  # every catalog topic is a log; Faust changelogs are compacted


SEAT = "seat"  # keyed by concert_id|seat_id, consumed together by the seat agent
CONCERT = "concert"  # keyed by concert_id, consumed together by the seat projection
PAYMENT = "payment"  # keyed by reservation_id, consumed together by the payment agent

CATALOG: tuple[TopicSpec, ...] = (
    TopicSpec(
        "reservation.requested",
        "concert_id|seat_id",
        ("ReservationRequested",),
        "reservation (HTTP)",
        ("reservation",),
        SEAT,
    ),
    TopicSpec(
        "seat.hold_expiry",
        "concert_id|seat_id",
        ("ExpireHold",),
        "reservation (hold sweeper)",
        ("reservation",),
        SEAT,
    ),
    TopicSpec(
        "payment.completed",
        "concert_id|seat_id",
        ("PaymentCompleted",),
        "payment",
        ("reservation",),
        SEAT,
    ),
    TopicSpec(
        "payment.failed",
        "concert_id|seat_id",
        ("PaymentFailed",),
        "payment",
        ("reservation",),
        SEAT,
    ),
    TopicSpec(
        "payment.refunded",
        "concert_id|seat_id",
        ("PaymentRefunded",),
        "payment",
        ("reservation",),
        SEAT,
    ),
    TopicSpec(
        "payment.requested",
        "reservation_id",
        ("PaymentRequested",),
        "reservation (HTTP)",
        ("payment",),
        PAYMENT,
    ),
    TopicSpec(
        "payment.refund_requested",
        "reservation_id",
        ("RefundPayment",),
        "reservation (seat agent)",
        ("payment",),
        PAYMENT,
    ),
    TopicSpec(
        "concert.created",
        "concert_id",
        ("ConcertCreated",),
        "reservation (HTTP)",
        ("seat_projection",),
        CONCERT,
    ),
    TopicSpec(
        "seat.held",
        "concert_id",
        ("SeatHeld",),
        "reservation (seat agent)",
        ("seat_projection",),
        CONCERT,
    ),
    TopicSpec(
        "seat.released",
        "concert_id",
        ("SeatReleased",),
        "reservation (seat agent)",
        ("seat_projection",),
        CONCERT,
    ),
    TopicSpec(
        "seat.confirmed",
        "concert_id",
        ("SeatConfirmed",),
        "reservation (seat agent)",
        ("seat_projection", "queue"),
        CONCERT,
    ),
    TopicSpec(
        "reservation.rejected",
        "concert_id",
        ("ReservationRejected",),
        "reservation (seat agent)",
        (),
        CONCERT,
    ),
)

BY_NAME = {spec.name: spec for spec in CATALOG}
# Where the seat agent publishes each fact it decides (the message type's topic).
TOPIC_OF = {message: spec.name for spec in CATALOG for message in spec.messages}


def key_of(topic: str, message: object) -> bytes:
    """The partitioning key this catalog names for `topic`, read off the message."""
    key = BY_NAME[topic].key
    if key == "concert_id|seat_id":
        return f"{getattr(message, 'concert_id')}|{getattr(message, 'seat_id')}".encode()  # noqa: B009
    return str(getattr(message, key)).encode()


def names(group: str) -> tuple[str, ...]:
    return tuple(spec.name for spec in CATALOG if spec.group == group)


def consumed_by(service: str) -> tuple[str, ...]:
    return tuple(spec.name for spec in CATALOG if service in spec.consumers)


async def ensure_topics(bootstrap: str, partitions: int, replication: int) -> list[str]:
    """Create every catalog topic that does not exist yet (idempotent); return those created.

    Run before any worker starts: a topic auto-created by a first send would get the broker's
    default partition count and break co-partitioning. An existing topic with another partition
    count is an error, named, rather than a silent mis-routing of seats.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in CATALOG if spec.name not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        spec.name, partitions, replication, None, {"cleanup.policy": spec.cleanup}
                    )
                    for spec in missing
                ]
            )
        described = await admin.describe_topics([spec.name for spec in CATALOG])
        wrong = {
            d["topic"]: len(d["partitions"])
            for d in described
            if d.get("partitions") and len(d["partitions"]) != partitions
        }
        if wrong:
            raise RuntimeError(
                f"topics with a partition count other than KAFKA_PARTITIONS={partitions}: {wrong}"
            )
        return [spec.name for spec in missing]
    finally:
        await admin.close()
