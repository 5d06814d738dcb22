"""Complete a buyer's queue token when their seat is confirmed (consumes `seat.confirmed`).

The token is completed (its slot freed for the next waiter) once the buyer has no other pending
or held reservation for the concert, so a fan buying several seats keeps their token until the
last one is settled. Offsets are committed after each batch is handled: at-least-once, and
completing an already completed token changes nothing.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer

from services.queue.metrics import QueueMetrics
from services.queue.store import QueueStore
from shared.errors import Unavailable
from shared.events import SeatConfirmed, UnknownMessage, decode
from shared.holds import open_holds
from shared.kafka_compat import pace_fetches
from shared.redis_client import UNAVAILABLE_ERRORS

log = logging.getLogger(__name__)
TOPIC = "seat.confirmed"
RETRYABLE: tuple[type[Exception], ...] = (Unavailable, *UNAVAILABLE_ERRORS)
GROUP = "queue"


class Confirmations:
    def __init__(
        self,
        brokers: str,
        store: QueueStore,
        metrics: QueueMetrics,
        *,
        session_timeout_s: float,
        fetch_min_interval_ms: float,
    ) -> None:
        pace_fetches(fetch_min_interval_ms)
        self.store = store
        self.metrics = metrics
        self.consumer = AIOKafkaConsumer(
            TOPIC,
            bootstrap_servers=brokers,
            group_id=GROUP,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(session_timeout_s * 1000),
            heartbeat_interval_ms=max(100, int(session_timeout_s * 1000 / 10)),
        )

    async def handle(self, raw: bytes) -> None:
        try:
            m = decode(raw)
        except UnknownMessage as exc:
            log.error("skipping undecodable %s message: %s", TOPIC, exc)
            return
        if not isinstance(m, SeatConfirmed) or m.queue_ticket <= 0:
            return
        if await open_holds(self.store.redis, m.concert_id, m.user_id) > 0:
            return  # more seats of theirs still pending or held: keep the token
        if await self.store.complete(m.concert_id, m.user_id, m.queue_ticket) in ("w", "a"):
            self.metrics.completed.inc()

    async def run(self) -> None:
        await self.consumer.start()
        try:
            while True:
                batches = await self.consumer.getmany(timeout_ms=500, max_records=500)
                for records in batches.values():
                    for record in records:
                        await self._retrying(record.value or b"")
                if batches:
                    await self.consumer.commit()
        finally:
            await self.consumer.stop()

    async def _retrying(self, raw: bytes) -> None:
        while True:
            try:
                await self.handle(raw)
                return
            except RETRYABLE:
                log.warning("Redis unavailable while completing a token; retrying")
                await asyncio.sleep(1.0)
