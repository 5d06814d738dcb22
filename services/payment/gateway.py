"""The payment gateway port and its simulator.

A real payment provider de-duplicates by idempotency key on its side; the simulator does the
same with a ledger in Redis (``psp:{charges}:<key>``, ``psp:{refunds}:<key>``, SET NX), so a
redelivered request returns the first outcome and never charges twice, even across restarts.
"""

from __future__ import annotations

import asyncio
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from shared.redis_client import AnyRedis, read_lua


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    reason: str = ""


class PaymentGateway(ABC):
    @abstractmethod
    async def charge(self, idempotency_key: str, amount: int) -> Outcome: ...

    @abstractmethod
    async def refund(self, idempotency_key: str, amount: int) -> Outcome: ...


RECORD_ONCE_LUA = read_lua(__file__, "record_once")  # the first outcome per key, kept

RETENTION_S = 7 * 86400


class SimulatedGateway(PaymentGateway):
    """Latency and a failure rate, as configured; outcomes recorded once per idempotency key,
    in one Redis round trip per call."""

    # How many distinct successful charges and refunds were made (for audits). Each outcome
    # record shares its counter's hash tag, so one script touches one Redis Cluster slot.
    CHARGES = "psp:{charges}"
    REFUNDS = "psp:{refunds}"

    def __init__(
        self, redis: AnyRedis, *, latency_ms: float, failure_rate: float, seed: int | None = None
    ) -> None:
        self.redis = redis
        self.latency_s = latency_ms / 1000
        self.failure_rate = failure_rate
        self.rng = random.Random(seed)
        self._record: Any = redis.register_script(RECORD_ONCE_LUA)

    async def _once(self, key: str, counter: str, outcome: Outcome) -> Outcome:
        value = "ok" if outcome.ok else f"failed:{outcome.reason}"
        first = str(await self._record(keys=[key, counter], args=[value, RETENTION_S]))
        return Outcome(True) if first == "ok" else Outcome(False, first.split(":", 1)[1])

    async def charge(self, idempotency_key: str, amount: int) -> Outcome:
        """A repeated key answers the first outcome (after the same latency: the simulator does
        not look it up first, so a charge costs one round trip)."""
        key = f"{self.CHARGES}:{idempotency_key}"
        await asyncio.sleep(self.latency_s)
        if self.rng.random() < self.failure_rate:
            return await self._once(key, self.CHARGES, Outcome(False, "card_declined"))
        return await self._once(key, self.CHARGES, Outcome(True))

    async def refund(self, idempotency_key: str, amount: int) -> Outcome:
        await asyncio.sleep(self.latency_s)
        return await self._once(f"{self.REFUNDS}:{idempotency_key}", self.REFUNDS, Outcome(True))
