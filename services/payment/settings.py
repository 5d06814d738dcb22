"""Payment-service settings, from the environment (documented in the README)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.settings import Env, WorkerSettings


@dataclass(frozen=True)
class PaymentSettings(WorkerSettings):
    NAME = "PAYMENT"
    PORT = 8002

    latency_ms: float
    failure_rate: float
    concurrency: int

    @classmethod
    def from_env(cls, e: Env | None = None) -> PaymentSettings:
        e = e or Env()
        return cls(
            **cls.common(e),
            latency_ms=e.number("PAYMENT_LATENCY_MS", 50.0, minimum=0.0),
            failure_rate=e.number("PAYMENT_FAILURE_RATE", 0.0, minimum=0.0, maximum=1.0),
            concurrency=e.integer("PAYMENT_CONCURRENCY", 64, minimum=1, maximum=1024),
        )
