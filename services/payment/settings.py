"""Payment-service settings, from the environment (documented in the README)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shared.settings import Env, InfraSettings, faust_datadir, listener


@dataclass(frozen=True)
class PaymentSettings:
    infra: InfraSettings
    host: str
    port: int
    latency_ms: float
    failure_rate: float
    concurrency: int
    datadir: Path

    @classmethod
    def from_env(cls, e: Env | None = None) -> PaymentSettings:
        e = e or Env()
        infra = InfraSettings.from_env(e)
        host, port = listener(e, infra.env, "PAYMENT", 8002)
        return cls(
            infra=infra,
            host=host,
            port=port,
            latency_ms=e.number("PAYMENT_LATENCY_MS", 50.0, minimum=0.0),
            failure_rate=e.number("PAYMENT_FAILURE_RATE", 0.0, minimum=0.0, maximum=1.0),
            concurrency=e.integer("PAYMENT_CONCURRENCY", 64, minimum=1, maximum=1024),
            datadir=faust_datadir(e, "PAYMENT", "payment"),
        )
