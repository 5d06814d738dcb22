"""What a case looks like over time, read from outside once a second: the reservation group's
consumer lag (end offsets minus its committed offsets, as a lag exporter computes it) and the
fans' flows finished per second."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from shared.topics import consumed_by, partitions_of

GROUP = "reservation"  # the seat agent's consumer group (the Faust app id)


async def group_lag(brokers: str, group: str, topics: tuple[str, ...]) -> int:
    """Records on `topics` the group has not committed yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers, request_timeout_ms=3000)
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    try:  # started inside: a start cut short (brokers down, timeout) still closes both
        await admin.start()
        await consumer.start()
        committed = await admin.list_consumer_group_offsets(group)
        partitions = await partitions_of(brokers, *topics)
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
        await admin.close()
    return sum(
        max(0, end - (committed[tp].offset if tp in committed else 0)) for tp, end in ends.items()
    )


@dataclass
class Timeline:
    brokers: str
    t: list[float] = field(default_factory=list)
    lag: list[int | None] = field(default_factory=list)  # None: the brokers did not answer

    async def sample(self, now: Callable[[], float]) -> None:
        """Every second until cancelled."""
        topics = consumed_by("reservation")
        while True:
            lag: int | None = None
            with contextlib.suppress(Exception):  # brokers down in the case: a gap
                lag = await asyncio.wait_for(group_lag(self.brokers, GROUP, topics), 3.0)
            self.t.append(round(now(), 1))
            self.lag.append(lag)
            await asyncio.sleep(1.0)


def per_second(times: list[float], seconds: float) -> list[int]:
    """How many of `times` fall in each whole second from 0 to `seconds`."""
    counts = [0] * (int(seconds) + 1)
    for t in times:
        if 0 <= t <= seconds:
            counts[int(t)] += 1
    return counts
