"""The payment gateway port and its simulator.

A real payment provider de-duplicates by idempotency key on its side; the simulator does the
same with a ledger in Redis (``psp:charge:<key>``, ``psp:refund:<key>``, SET NX), so a
redelivered request returns the first outcome and never charges twice, even across restarts.
"""

from __future__ import annotations

import asyncio
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass

from shared.redis_client import AnyRedis


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    reason: str = ""


class PaymentGateway(ABC):
    @abstractmethod
    async def charge(self, idempotency_key: str, amount: int) -> Outcome: ...

    @abstractmethod
    async def refund(self, idempotency_key: str, amount: int) -> Outcome: ...


class SimulatedGateway(PaymentGateway):
    """Latency and a failure rate, as configured; outcomes recorded once per idempotency key."""

    CHARGES = "psp:charges"  # how many distinct successful charges were made (for audits)
    REFUNDS = "psp:refunds"

    def __init__(
        self, redis: AnyRedis, *, latency_ms: float, failure_rate: float, seed: int | None = None
    ) -> None:
        self.redis = redis
        self.latency_s = latency_ms / 1000
        self.failure_rate = failure_rate
        self.rng = random.Random(seed)

    async def _once(self, key: str, counter: str, outcome: Outcome) -> Outcome:
        value = "ok" if outcome.ok else f"failed:{outcome.reason}"
        if await self.redis.set(key, value, nx=True, ex=7 * 86400):
            if outcome.ok:
                await self.redis.incr(counter)
            return outcome
        first = str(await self.redis.get(key) or "ok")
        return Outcome(True) if first == "ok" else Outcome(False, first.split(":", 1)[1])

    async def charge(self, idempotency_key: str, amount: int) -> Outcome:
        key = f"psp:charge:{idempotency_key}"
        recorded = await self.redis.get(key)
        if recorded is not None:
            return await self._once(key, self.CHARGES, Outcome(True))
        await asyncio.sleep(self.latency_s)
        if self.rng.random() < self.failure_rate:
            return await self._once(key, self.CHARGES, Outcome(False, "card_declined"))
        return await self._once(key, self.CHARGES, Outcome(True))

    async def refund(self, idempotency_key: str, amount: int) -> Outcome:
        await asyncio.sleep(self.latency_s)
        return await self._once(f"psp:refund:{idempotency_key}", self.REFUNDS, Outcome(True))
