"""Queue-service settings, from the environment (documented in the README's settings table)."""

from __future__ import annotations

from dataclasses import dataclass

from services.queue.core import ControlLaw, burst_for
from shared.identity import IdentitySettings
from shared.settings import Env, ServiceSettings, TokenTimes, token_secret


@dataclass(frozen=True)
class QueueSettings(ServiceSettings):
    NAME = "QUEUE"
    PORT = 8000

    reuse_port: bool
    token_secret: bytes
    identity: IdentitySettings
    admit_per_s: float
    admit_control: str  # "pipeline": the rate follows the pipeline's health; "fixed"
    admit_floor_per_s: float
    control_delay_ms: float
    max_active: int
    tokens: TokenTimes
    admission_interval_s: float
    push_interval_s: float
    entry_rate_per_user: float
    entry_rate_per_ip: float
    trust_forwarded_for: bool
    concert_retention_s: int
    complete_on_confirmed: bool
    wait_replicas: int
    wait_timeout_ms: int

    @property
    def control_law(self) -> ControlLaw:
        """Between the floor and QUEUE_ADMIT_PER_S; behind above QUEUE_CONTROL_DELAY_MS of event
        delay, healthy under half of it."""
        return ControlLaw(
            floor=min(self.admit_floor_per_s, self.admit_per_s),
            ceiling=self.admit_per_s,
            low_ms=self.control_delay_ms / 2,
            high_ms=self.control_delay_ms,
        )

    @property
    def admit_burst(self) -> int:
        """Token-bucket depth: a tenth of a second of admissions, at least one; 0 = gate closed."""
        return burst_for(self.admit_per_s)

    @classmethod
    def from_env(cls, e: Env | None = None) -> QueueSettings:
        e = e or Env()
        common = cls.common(e)
        return cls(
            **common,
            reuse_port=e.flag("QUEUE_REUSE_PORT", False),
            token_secret=token_secret(e, common["infra"].env),
            identity=IdentitySettings.from_env(e),
            admit_per_s=e.number("QUEUE_ADMIT_PER_S", 200.0, minimum=0.0),
            admit_control=e.choice("QUEUE_ADMIT_CONTROL", "pipeline", ("pipeline", "fixed")),
            admit_floor_per_s=e.number("QUEUE_ADMIT_FLOOR_PER_S", 10.0, minimum=0.1),
            control_delay_ms=e.number(
                "QUEUE_CONTROL_DELAY_MS", 500.0, minimum=10.0, maximum=60_000.0
            ),
            max_active=e.integer("QUEUE_MAX_ACTIVE", 2000, minimum=0),
            tokens=TokenTimes.from_env(e),
            admission_interval_s=e.number(
                "QUEUE_ADMISSION_INTERVAL_MS", 100.0, minimum=5.0, maximum=5000.0
            )
            / 1000,
            push_interval_s=e.number(
                "QUEUE_PUSH_INTERVAL_MS", 500.0, minimum=50.0, maximum=10_000.0
            )
            / 1000,
            entry_rate_per_user=e.number("QUEUE_ENTRY_RATE_PER_USER", 2.0, minimum=0.0),
            entry_rate_per_ip=e.number("QUEUE_ENTRY_RATE_PER_IP", 50.0, minimum=0.0),
            trust_forwarded_for=e.flag("QUEUE_TRUST_FORWARDED_FOR", False),
            concert_retention_s=e.integer("QUEUE_CONCERT_RETENTION_S", 86400, minimum=60),
            complete_on_confirmed=e.flag("QUEUE_COMPLETE_ON_CONFIRMED", True),
            wait_replicas=e.integer("QUEUE_WAIT_REPLICAS", 0, minimum=0, maximum=5),
            wait_timeout_ms=e.integer("QUEUE_WAIT_TIMEOUT_MS", 200, minimum=1, maximum=5000),
        )
