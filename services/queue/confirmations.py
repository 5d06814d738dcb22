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
        fetch_min_bytes: int,
        fetch_max_wait_ms: int,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.consumer = AIOKafkaConsumer(
            TOPIC,
            bootstrap_servers=brokers,
            group_id=GROUP,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_min_bytes=fetch_min_bytes,
            fetch_max_wait_ms=fetch_max_wait_ms,
            session_timeout_ms=int(session_timeout_s * 1000),
            heartbeat_interval_ms=max(100, int(session_timeout_s * 1000 / 10)),
        )

    def buyer(self, raw: bytes) -> tuple[str, str, int] | None:
        """(concert, user, ticket) of a confirmed seat bought with a queue token, else None."""
        try:
            m = decode(raw)
        except UnknownMessage as exc:
            log.error("skipping undecodable %s message: %s", TOPIC, exc)
            return None
        if not isinstance(m, SeatConfirmed) or m.queue_ticket <= 0:
            return None
        return m.concert_id, m.user_id, m.queue_ticket

    async def handle(self, raws: list[bytes]) -> None:
        """One Redis round trip for a whole batch of confirmations."""
        buyers = [b for b in map(self.buyer, raws) if b is not None]
        if buyers:
            answers = await self.store.complete_settled(buyers)
            self.metrics.completed.inc(sum(1 for a in answers if a in ("w", "a")))

    async def run(self) -> None:
        await self.consumer.start()
        try:
            while True:
                batches = await self.consumer.getmany(timeout_ms=500, max_records=500)
                raws = [r.value or b"" for records in batches.values() for r in records]
                self.metrics.consumed.labels(TOPIC).inc(len(raws))
                await self._report_lag()
                if raws:
                    await self._retrying(raws)
                if batches:
                    await self.consumer.commit()
        finally:
            await self.consumer.stop()

    async def _report_lag(self) -> None:
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                behind = highwater - await self.consumer.position(tp)
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, behind))

    async def _retrying(self, raws: list[bytes]) -> None:
        while True:
            try:
                await self.handle(raws)
                return
            except RETRYABLE:
                log.warning("Redis unavailable while completing a token; retrying")
                await asyncio.sleep(1.0)
