"""The pipeline's health, told to the waiting room through Redis.

Each pipeline worker (the seat agent's service) reports once a second how long events wait
before it handles them and how many requests it refused over its last `REFUSALS_WINDOW`
reports; the queue's admission loop reads every report and lets its admit rate follow
(services/queue/core.py, `next_rate`). Reports are stamped with Redis time; one older than
`MAX_AGE_MS` counts as silence.

One hash, ``pipeline:health``: worker -> ``delay_ms:refused:reported_at_ms``.
"""

from __future__ import annotations

from typing import Any

from shared.redis_client import AnyRedis, read_lua

HEALTH_KEY = "pipeline:health"
REPORT_EVERY_S = 1.0
REFUSALS_WINDOW = (
    3  # reports: a refusal is told for three seconds, so no once-a-second reader misses it
)
MAX_AGE_MS = 5000  # three missed reports: that worker is silent
REPORT_LUA = read_lua(__file__, "health_report")
READ_LUA = read_lua(__file__, "health_read")


class HealthReporter:
    """One worker's reports."""

    def __init__(self, redis: AnyRedis, worker: str) -> None:
        self.worker = worker
        self._report: Any = redis.register_script(REPORT_LUA)

    async def report(self, delay_ms: float, refused: int) -> None:
        await self._report(keys=[HEALTH_KEY], args=[self.worker, f"{delay_ms:.0f}", refused])


class HealthReader:
    def __init__(self, redis: AnyRedis) -> None:
        self._read: Any = redis.register_script(READ_LUA)

    async def read(self) -> tuple[int, list[tuple[float, int, int]]]:
        """Redis's time now (ms) and every report as (delay ms, refused, reported at ms)."""
        raw = await self._read(keys=[HEALTH_KEY], args=[])
        return int(raw[0]), [r for r in map(parse, raw[2::2]) if r is not None]


def parse(value: Any) -> tuple[float, int, int] | None:
    text = value.decode() if isinstance(value, bytes) else str(value)
    parts = text.split(":")
    try:
        return float(parts[0]), int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return None
