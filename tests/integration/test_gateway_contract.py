"""One contract for every payment gateway: the simulator on real Redis, and the in-memory one
of the tests. A real provider de-duplicates by idempotency key; a gateway must too, or a
redelivered payment request would charge a fan twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import pytest_asyncio

from services.payment.gateway import Outcome, PaymentGateway, SimulatedGateway
from shared.redis_client import create_redis
from tests.support.payment import InMemoryGateway, Ledger


@dataclass
class Provider:
    """Gateways over one provider's ledger, and that provider's statement."""

    gateway: Callable[[bool], PaymentGateway]  # declining every new charge, or not
    charges_made: Callable[[], Awaitable[int]]  # successful distinct charges so far
    refunds_made: Callable[[], Awaitable[int]]


@pytest_asyncio.fixture(params=["simulated", "in-memory"])
async def provider(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[Provider]:
    if request.param == "in-memory":
        ledger = Ledger()

        async def charges() -> int:
            return sum(o.ok for o in ledger.charges.values())

        async def refunds() -> int:
            return len(ledger.refunds)

        yield Provider(lambda decline: InMemoryGateway(ledger, decline), charges, refunds)
        return
    redis = create_redis(redis_url, socket_timeout=2.0, max_connections=4)

    async def counter(key: str) -> int:
        return int(await redis.get(key) or 0)

    def simulated(decline: bool) -> PaymentGateway:
        return SimulatedGateway(redis, latency_ms=0, failure_rate=1.0 if decline else 0.0)

    try:
        yield Provider(
            simulated,
            lambda: counter(SimulatedGateway.CHARGES),
            lambda: counter(SimulatedGateway.REFUNDS),
        )
    finally:
        await redis.aclose()


def key() -> str:
    return f"r-{uuid.uuid4().hex}"


class TestEveryGateway:
    async def test_charges_a_key_once_however_often_it_is_asked(self, provider: Provider) -> None:
        gw, k, before = provider.gateway(False), key(), await provider.charges_made()
        outcomes = [await gw.charge(k, 100) for _ in range(3)]
        assert outcomes == [Outcome(True)] * 3
        assert await provider.charges_made() == before + 1

    async def test_keeps_a_declined_charge_declined_on_a_retry(self, provider: Provider) -> None:
        k, before = key(), await provider.charges_made()
        declined = await provider.gateway(True).charge(k, 100)
        retried = await provider.gateway(False).charge(k, 100)
        assert declined == Outcome(False, "card_declined") and retried == declined
        assert await provider.charges_made() == before

    async def test_charges_different_keys_separately(self, provider: Provider) -> None:
        gw, before = provider.gateway(False), await provider.charges_made()
        assert (await gw.charge(key(), 100)).ok and (await gw.charge(key(), 100)).ok
        assert await provider.charges_made() == before + 2

    async def test_refunds_a_key_once(self, provider: Provider) -> None:
        gw, k, before = provider.gateway(False), key(), await provider.refunds_made()
        await gw.charge(k, 100)
        assert [await gw.refund(k, 100) for _ in range(2)] == [Outcome(True)] * 2
        assert await provider.refunds_made() == before + 1
