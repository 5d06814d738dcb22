"""A Faust worker whose table recovery cannot progress exits, so that its supervisor restarts it
(shared/recovery_watch.py, `RecoveryWatchdog` in shared/faust_app.py), on a real broker.

The stall is a real one: a changelog whose last offset is a transaction marker. A consumer never
receives a marker, and Faust's non-transactional recovery waits for the offset before the
high-water mark, so it waits forever (what `make chaos` once saw after a scale-down had the same
shape: records left to read, none read)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from infra.embedded import Server
from infra.processes import free_port
from infra.stack import Stack

CHANGELOG = "seat_projection-seat_to_status-changelog"
PARTITIONS = 2


async def end_with_a_transaction_marker(brokers: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        config = {"cleanup.policy": "compact"}
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1, topic_configs=config)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=brokers, transactional_id="stall-recovery")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b'["available", 0]', key=b"c1|A-1", partition=0)
    finally:
        await producer.stop()


async def test_a_worker_whose_table_recovery_stalls_exits_with_70_naming_why(
    tmp_path: Path, private_broker: Server, redis_url: str
) -> None:
    await end_with_a_transaction_marker(private_broker.address, CHANGELOG)
    stack = Stack(tmp_path)
    stack.env.update(
        APP_ENV="test",
        REDIS_URL=redis_url,
        KAFKA_BROKERS=private_broker.address,
        KAFKA_PARTITIONS=str(PARTITIONS),
        FAUST_RECOVERY_STALL_S="3",
    )
    stack.start_infra()
    try:
        with pytest.raises(RuntimeError, match="exited with 70") as stopped:
            await asyncio.to_thread(stack.start_service, "seat_projection", port=free_port())
        assert re.search(r"table recovery stalled: \d+ changelog records", str(stopped.value))
    finally:
        await asyncio.to_thread(stack.stop)
