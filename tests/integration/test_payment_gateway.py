"""The payment simulator's ledger on real Redis: pytest tests/integration/test_payment_gateway.py

A real provider de-duplicates by idempotency key; the simulator must too, or a redelivered
payment request would charge a fan twice.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest_asyncio

from services.payment.gateway import SimulatedGateway
from shared.redis_client import AnyRedis, create_redis


@pytest_asyncio.fixture
async def redis(redis_url: str) -> AsyncIterator[AnyRedis]:
    client = create_redis(redis_url, socket_timeout=2.0, max_connections=4)
    yield client
    await client.aclose()


def key() -> str:
    return f"r-{uuid.uuid4().hex}"


async def charged(redis: AnyRedis) -> int:
    return int(await redis.get(SimulatedGateway.CHARGES) or 0)


class TestTheSimulatedGateway:
    async def test_charges_a_key_once_however_often_it_is_asked(self, redis: AnyRedis) -> None:
        gw = SimulatedGateway(redis, latency_ms=0, failure_rate=0.0)
        k, before = key(), await charged(redis)
        outcomes = [await gw.charge(k, 100) for _ in range(3)]
        assert all(o.ok for o in outcomes)
        assert await charged(redis) == before + 1

    async def test_keeps_a_declined_charge_declined_on_a_retry(self, redis: AnyRedis) -> None:
        k, before = key(), await charged(redis)
        declined = await SimulatedGateway(redis, latency_ms=0, failure_rate=1.0).charge(k, 100)
        retried = await SimulatedGateway(redis, latency_ms=0, failure_rate=0.0).charge(k, 100)
        assert (declined.ok, declined.reason) == (False, "card_declined")
        assert retried == declined
        assert await charged(redis) == before

    async def test_refunds_a_key_once(self, redis: AnyRedis) -> None:
        gw = SimulatedGateway(redis, latency_ms=0, failure_rate=0.0)
        k = key()
        before = int(await redis.get(SimulatedGateway.REFUNDS) or 0)
        assert (await gw.refund(k, 100)).ok and (await gw.refund(k, 100)).ok
        assert int(await redis.get(SimulatedGateway.REFUNDS) or 0) == before + 1
