"""The topic catalog: name, key, partitions, cleanup policy, producer and consumers of every topic.

Co-partitioning: every topic the seat agent consumes is keyed by the seat key
(``concert_id|seat_id``) and has `KAFKA_PARTITIONS` partitions, so all messages about one seat
reach the same partition and its single writer. Seat facts for the read model are keyed by
``concert_id`` so the projection sees each concert's facts in order on one partition.
Changelog topics of Faust tables are created by Faust, compacted, with `changelog_configs`.

Topic-level settings live here, not in broker defaults: how long each topic keeps its records
(`retention_ms`), its segment size, and `min.insync.replicas` (a cluster-wide policy read from
`KAFKA_MIN_INSYNC_REPLICAS`, written onto every topic the project creates).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DAY_MS = 24 * 3600 * 1000
# Commands are kept a week: far longer than any consumer may lag, so none is deleted unprocessed.
COMMANDS_KEPT_MS = 7 * DAY_MS
# Facts (sales, payments, refunds) are the record of the sale and what a replay rebuilds from:
# kept until an operator archives them (-1 = no time limit).
FACTS_KEPT_MS = -1
# Hold-expiry timers matter for minutes: a day is plenty.
TIMERS_KEPT_MS = DAY_MS
# Small segments (the default is 1 GiB): retention and compaction work on closed segments only.
SEGMENT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    messages: tuple[str, ...]
    producer: str
    consumers: tuple[str, ...]
    group: str  # co-partitioning group: topics of one group share a partition count
    retention_ms: int = FACTS_KEPT_MS
    segment_bytes: int = SEGMENT_BYTES
    cleanup: str = "delete"  # every catalog topic is a log; Faust changelogs are compacted

    def configs(self, min_insync_replicas: int) -> dict[str, str]:
        """The topic-level settings this catalog gives the topic."""
        return {
            "cleanup.policy": self.cleanup,
            "retention.ms": str(self.retention_ms),
            "segment.bytes": str(self.segment_bytes),
            "min.insync.replicas": str(min_insync_replicas),
        }


def changelog_configs(min_insync_replicas: int) -> dict[str, str]:
    """Extra settings of every Faust table changelog (Faust itself makes them compacted)."""
    return {"min.insync.replicas": str(min_insync_replicas), "segment.bytes": str(SEGMENT_BYTES)}


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
        retention_ms=COMMANDS_KEPT_MS,
    ),
    TopicSpec(
        "seat.hold_expiry",
        "concert_id|seat_id",
        ("ExpireHold",),
        "reservation (hold sweeper)",
        ("reservation",),
        SEAT,
        retention_ms=TIMERS_KEPT_MS,
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
        retention_ms=COMMANDS_KEPT_MS,
    ),
    TopicSpec(
        "payment.refund_requested",
        "reservation_id",
        ("RefundPayment",),
        "reservation (seat agent)",
        ("payment",),
        PAYMENT,
        retention_ms=COMMANDS_KEPT_MS,
    ),
    TopicSpec(
        "concert.created",
        "concert_id",
        ("ConcertCreated",),
        "reservation (HTTP)",
        ("seat_projection", "reservation (catalog)"),
        CONCERT,
        cleanup="compact",  # the catalog's source of truth: one record per concert, kept
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


async def ensure_topics(
    bootstrap: str, partitions: int, replication: int, min_insync_replicas: int
) -> list[str]:
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
                        spec.name, partitions, replication, None, spec.configs(min_insync_replicas)
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


async def partitions_of(bootstrap: str, *topics: str) -> list[Any]:
    """Every partition (aiokafka `TopicPartition`) of `topics`, as the broker describes them;
    none for a missing topic. A consumer's own metadata covers only what it subscribed to or was
    assigned, so asking the broker is the reliable way to list partitions before assigning."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    return sorted(
        TopicPartition(d["topic"], p["partition"])
        for d in described
        if not d.get("error_code")
        for p in d.get("partitions") or ()
    )


async def topic_log(bootstrap: str, topic: str) -> list[Any]:
    """Every catalog message (shared.events) ever published on `topic`, read from its start to
    its end as a downstream consumer would: no group, nothing committed."""
    from aiokafka import AIOKafkaConsumer

    from shared.events import decode

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await partitions_of(bootstrap, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        messages: list[Any] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in tps])

        while await behind():
            for records in (await consumer.getmany(timeout_ms=500)).values():
                messages.extend(decode(record.value or b"") for record in records)
        return messages
    finally:
        await consumer.stop()
