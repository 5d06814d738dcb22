"""What the broker conformance suites share: group timeouts, the known defects of the noida-db
fallback, and topics, producers and consumers as the services use them."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.support.queue import eventually, new_id

# Short enough for tests, and within a real Kafka's limits (group.min.session.timeout.ms=6000).
GROUP_TIMEOUTS: dict[str, int] = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 500,
    "rebalance_timeout_ms": 6000,
}
# A real Kafka notices a dead member after its session timeout and rebalances within about
# one more heartbeat; these deadlines leave several seconds of slack on top.
TAKEOVER_WITHIN_S = 15.0

NOIDA_DEAD_MEMBER = (
    "noida-db 0.2.3: a consumer-group member that dies without LeaveGroup (SIGKILL) is never "
    "expired while others heartbeat, and a group re-formed without it still names it as "
    "leader, so nobody sends the leader SyncGroup and the survivors rejoin forever"
)
NOIDA_NO_TRANSACTIONS = "noida-db 0.2.3 has no transaction coordinator"


def known_defect(
    request: pytest.FixtureRequest, broker_impl: str, impl: str, why: str, *, strict: bool = True
) -> None:
    """Expect this test to fail on `impl`; strict: it fails loudly once the defect is fixed."""
    if broker_impl == impl:
        request.applymarker(pytest.mark.xfail(reason=why, strict=strict))


async def create_topic(brokers: str, partitions: int, name: str | None = None) -> str:
    name = name or new_id("conformance")
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    try:
        await admin.start()
        response = await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    errors = [(topic, code) for topic, code, *_ in response.topic_errors if code != 0]
    assert not errors, errors
    return name


@contextlib.asynccontextmanager
async def acks_all_producer(brokers: str, **options: Any) -> AsyncIterator[AIOKafkaProducer]:
    """A producer that waits for every in-sync replica (what the services use)."""
    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all", **options)
    try:
        await producer.start()
        yield producer
    finally:
        await producer.stop()


async def started_consumer(
    stack: contextlib.AsyncExitStack, brokers: str, *topics: str, **options: Any
) -> AIOKafkaConsumer:
    """A started consumer, stopped when `stack` closes; with a group it has joined by then."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=brokers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **options,
    )
    stack.push_async_callback(consumer.stop)
    await asyncio.wait_for(consumer.start(), TAKEOVER_WITHIN_S)
    return consumer


async def read_records(consumer: AIOKafkaConsumer, count: int, within: float = 15.0) -> list[Any]:
    """Exactly `count` records from the consumer's assigned partitions, in arrival order."""
    records: list[Any] = []
    deadline = time.monotonic() + within
    while len(records) < count:
        assert time.monotonic() < deadline, f"read {len(records)} of {count} records in {within}s"
        for batch in (await consumer.getmany(timeout_ms=200)).values():
            records.extend(batch)
    assert len(records) == count, f"read {len(records)} records, expected {count}"
    return records


def topic_partitions(topic: str, partitions: int) -> set[TopicPartition]:
    return {TopicPartition(topic, p) for p in range(partitions)}


async def wait_for_log(proc: subprocess.Popen[bytes], log: Path, text: str) -> None:
    """Until a process's log says `text`; it failing first fails the test with its log."""

    async def logged() -> bool:
        output = await asyncio.to_thread(log.read_text, errors="replace")
        assert proc.poll() is None, f"exited with {proc.returncode}:\n{output[-2000:]}"
        return text in output

    await eventually(logged, within=TAKEOVER_WITHIN_S)
