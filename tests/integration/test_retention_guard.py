"""The failure matrix's sixth invariant on a real broker: records that retention deleted before
their consumer group processed them are named (committed offsets against the log's start)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.structs import OffsetAndMetadata

from infra.embedded import Server
from perf.chaos.invariants import deleted_unprocessed
from shared.topics import ensure_topics
from tests.support.queue import eventually

TP = TopicPartition("reservation.requested", 0)


async def commit(brokers: str, group: str, offset: int) -> None:
    """Commit `offset` for `group` and wait until the broker shows it (right after the topics
    are created the group coordinator may still be moving, and a commit then can be lost)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        for _ in range(10):
            consumer = AIOKafkaConsumer(bootstrap_servers=brokers, group_id=group)
            await consumer.start()
            try:
                consumer.assign([TP])
                await consumer.commit({TP: OffsetAndMetadata(offset, "")})
            finally:
                await consumer.stop()
            seen = await admin.list_consumer_group_offsets(group, partitions=[TP])
            if TP in seen and seen[TP].offset == offset:
                return
            await asyncio.sleep(0.5)
        raise AssertionError(f"the broker never showed {group}'s commit of {offset}")
    finally:
        await admin.close()


async def test_a_command_deleted_before_its_group_read_it_is_named(
    private_broker: Server,
) -> None:
    brokers = private_broker.address
    await ensure_topics(brokers, 1, 1, 1)
    producer = AIOKafkaProducer(bootstrap_servers=brokers)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(TP.topic, b"{}", partition=0, key=str(i).encode())
    finally:
        await producer.stop()
    await commit(brokers, "reservation", 3)
    assert await deleted_unprocessed(brokers) == []  # nothing deleted yet

    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:  # what retention does to a closed segment: the log now starts at 6
        await admin.delete_records({TP: RecordsToDelete(before_offset=6)}, timeout_ms=10_000)
    finally:
        await admin.close()
    await reported(brokers, ["reservation.requested[0]: reservation committed 3, log starts at 6"])
    await commit(brokers, "reservation", 8)  # processed past the deletion: nothing was lost
    await reported(brokers, [])


async def reported(brokers: str, expected: list[str]) -> None:
    """The guard reports `expected` once the broker has settled the commit or deletion (its
    group coordinator may still be moving right after the topics were created)."""

    async def matches() -> bool:
        return await deleted_unprocessed(brokers) == expected

    await eventually(matches, within=15, interval=0.5)
