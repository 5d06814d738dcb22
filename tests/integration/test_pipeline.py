"""The reservation -> payment -> confirmation pipeline, each service its own process, on the real
Redis and broker: the system's rules under races, failures, expiry, duplicates and crashes."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.events import SeatConfirmed, decode
from tests.support.pipeline import TERMINAL, Pipeline, pipeline
from tests.support.queue import eventually, new_id

pytestmark = pytest.mark.slow


async def buyers(p: Pipeline, concert: str, n: int) -> list[tuple[str, str]]:
    """`n` users with active queue tokens: (user, token)."""
    gate = asyncio.Semaphore(100)

    async def one(i: int) -> tuple[str, str]:
        async with gate:
            user = f"u{i}"
            return user, await p.active_token(concert, user)

    return await asyncio.gather(*(one(i) for i in range(n)))


async def gather_limited(coros: list[Any], limit: int = 100) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(c: Any) -> Any:
        async with gate:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


async def reserve_ok(p: Pipeline, token: str, concert: str, seat: str, user: str) -> str:
    status, body = await p.reserve(token, concert, seat, user)
    assert status == 202, body
    return str(body["reservation_id"])


async def confirmed_seat_log(brokers: str) -> list[SeatConfirmed]:
    """Every seat.confirmed fact ever published (read from the start of the topic)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic("seat.confirmed") or set()
        if not parts:
            await consumer.topics()
            parts = consumer.partitions_for_topic("seat.confirmed") or set()
        tps = [TopicPartition("seat.confirmed", n) for n in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        facts: list[SeatConfirmed] = []
        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in tps])

        while await behind():
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    fact = decode(record.value or b"")
                    assert isinstance(fact, SeatConfirmed)
                    facts.append(fact)
        return facts
    finally:
        await consumer.stop()


def assert_no_seat_sold_twice(facts: list[SeatConfirmed]) -> None:
    """Rule 1, over the whole log: one reservation per seat, however often it was published."""
    owners: dict[tuple[str, str], set[str]] = {}
    for f in facts:
        owners.setdefault((f.concert_id, f.seat_id), set()).add(f.reservation_id)
    assert all(len(r) == 1 for r in owners.values()), {
        k: v for k, v in owners.items() if len(v) > 1
    }


@pytest_asyncio.fixture(loop_scope="session")
async def default_pipeline(
    tmp_path: Path, redis_url: str, kafka_brokers: str
) -> AsyncIterator[Pipeline]:
    async with pipeline(tmp_path, redis_url, kafka_brokers) as p:
        yield p


class TestRace:
    async def test_a_thousand_buyers_racing_for_a_hundred_seats_sell_each_seat_once(
        self, default_pipeline: Pipeline, kafka_brokers: str
    ) -> None:
        p = default_pipeline
        concert = await p.create_concert(seats=100)
        users = await buyers(p, concert, 1000)
        rids = await gather_limited(
            [
                reserve_ok(p, token, concert, str(i % 100 + 1), user)
                for i, (user, token) in enumerate(users)
            ]
        )
        outcomes = await gather_limited([p.settled(r, {"held", "rejected"}) for r in rids])
        held = [o for o in outcomes if o["status"] == "held"]
        assert len(held) == 100
        assert Counter(o["reason"] for o in outcomes if o["status"] == "rejected") == {
            "seat_taken": 900
        }
        assert sorted(int(o["seat_id"]) for o in held) == list(range(1, 101))

        token_of = dict(users)
        paid = await gather_limited(
            [p.pay(token_of[o["user_id"]], o["reservation_id"], o["user_id"]) for o in held]
        )
        assert all(status == 202 for status, _ in paid)
        done = await gather_limited([p.settled(o["reservation_id"], TERMINAL) for o in held])
        assert all(o["status"] == "confirmed" for o in done)

        async def sold_out() -> dict[str, Any] | None:
            seats = await p.seat_map(concert, limit="1000")
            return seats if seats["counts"]["sold"] == 100 else None

        seats = await eventually(sold_out, within=20)
        assert seats["counts"] == {"available": 0, "held": 0, "sold": 100}
        assert {s["status"] for s in seats["seats"]} == {"sold"}

        async def tokens_completed() -> bool:
            answers = await gather_limited(
                [p.call("GET", "queue", f"/v1/queue/tokens/{token_of[o['user_id']]}") for o in held]
            )
            return all(s == 410 and b["error"]["reason"] == "completed" for s, b in answers)

        await eventually(tokens_completed, within=20)
        assert_no_seat_sold_twice(
            [f for f in await confirmed_seat_log(kafka_brokers) if f.concert_id == concert]
        )
