"""The queue's consumer of seat facts (`seat.held`, `seat.released`, `seat.confirmed`).

- Each fact sets the seat's status in the queue's view of the concert (versioned, so a replay
  or a late copy changes nothing), which decides the sale state: open, paused (every seat held
  or sold: admission stops until a hold lapses or fails) or sold out (final).
- A confirmed seat completes its buyer's queue token (its slot freed for the next waiter) once
  the buyer has no other pending or held reservation for the concert, so a fan buying several
  seats keeps their token until the last one is settled.

Offsets are committed after each batch is handled: at-least-once, and both steps are idempotent.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer

from services.queue.metrics import QueueMetrics
from services.queue.model import SEAT_AVAILABLE, SEAT_HELD, SEAT_SOLD
from services.queue.store import QueueStore
from shared.errors import Unavailable
from shared.events import (
    Message,
    SeatConfirmed,
    SeatHeld,
    SeatReleased,
    UnknownMessage,
    decode,
)
from shared.redis_client import UNAVAILABLE_ERRORS

log = logging.getLogger(__name__)
TOPICS = ("seat.held", "seat.released", "seat.confirmed")
RETRYABLE: tuple[type[Exception], ...] = (Unavailable, *UNAVAILABLE_ERRORS)
GROUP = "queue"
Fact = tuple[str, str, str, int]  # concert, seat, status (a/h/s), version


def seat_fact(m: Message) -> Fact | None:
    """What a seat message says about the seat's status, if anything."""
    if isinstance(m, SeatHeld):
        return m.concert_id, m.seat_id, SEAT_HELD, m.version
    if isinstance(m, SeatReleased):
        return m.concert_id, m.seat_id, SEAT_AVAILABLE, m.version
    if isinstance(m, SeatConfirmed):
        return m.concert_id, m.seat_id, SEAT_SOLD, m.version
    return None


def buyer(m: Message) -> tuple[str, str, int] | None:
    """(concert, user, ticket) of a confirmed seat bought with a queue token, else None."""
    if not isinstance(m, SeatConfirmed) or m.queue_ticket <= 0:
        return None
    return m.concert_id, m.user_id, m.queue_ticket


class SeatFacts:
    def __init__(
        self,
        brokers: str,
        store: QueueStore,
        metrics: QueueMetrics,
        *,
        retention_s: int,
        complete_tokens: bool,
        session_timeout_s: float,
        fetch_min_bytes: int,
        fetch_max_wait_ms: int,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.retention_s = retention_s
        self.complete_tokens = complete_tokens
        self.consumer = AIOKafkaConsumer(
            *TOPICS,
            bootstrap_servers=brokers,
            group_id=GROUP,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_min_bytes=fetch_min_bytes,
            fetch_max_wait_ms=fetch_max_wait_ms,
            session_timeout_ms=int(session_timeout_s * 1000),
            heartbeat_interval_ms=max(100, int(session_timeout_s * 1000 / 10)),
        )

    def decoded(self, raws: list[bytes]) -> list[Message]:
        out = []
        for raw in raws:
            try:
                out.append(decode(raw))
            except UnknownMessage as exc:
                log.error("skipping an undecodable seat fact: %s", exc)
        return out

    async def handle(self, raws: list[bytes]) -> None:
        """Two Redis round trips for a whole batch: the seats' statuses, then the buyers."""
        messages = self.decoded(raws)
        facts = [f for f in map(seat_fact, messages) if f is not None]
        if facts:
            await self.store.seats(facts, self.retention_s)
        buyers = [b for b in map(buyer, messages) if b is not None]
        if buyers and self.complete_tokens:
            answers = await self.store.complete_settled(buyers)
            self.metrics.completed.inc(sum(1 for a in answers if a in ("w", "a")))

    async def run(self) -> None:
        await self.consumer.start()
        try:
            while True:
                batches = await self.consumer.getmany(timeout_ms=500, max_records=500)
                raws = []
                for tp, records in batches.items():
                    self.metrics.consumed.labels(tp.topic).inc(len(records))
                    raws += [r.value or b"" for r in records]
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
                log.warning("Redis unavailable while applying seat facts; retrying")
                await asyncio.sleep(1.0)
