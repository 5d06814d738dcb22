"""Pure waiting-room logic: positions, ETAs, poll pacing and rate limiting.

No I/O and no clock reads: every function takes the time it needs.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.tokens import TOKEN_ACTIVE

MIN_POLL_MS = 500
MAX_POLL_MS = 15_000


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def position(ticket: int, frontier: int) -> int:
    """Place in line, 1 = next. O(1); an upper bound when waiters ahead have left early."""
    return max(1, ticket - frontier)


def eta_seconds(pos: int, measured_rate: float, configured_rate: float) -> list[int] | None:
    """A range, since admission pace varies; None when the gate is closed and nothing moves."""
    rate = measured_rate if measured_rate > 0.01 else configured_rate
    if rate <= 0:
        return None
    mid = pos / rate
    return [math.floor(mid * 0.75), math.ceil(mid * 1.25)]


def poll_after_ms(
    status: str, pos: int | None, rate: float, *, heartbeat_ms: int, active_ttl_ms: int, ticket: int
) -> int:
    """When to poll again: soon near the front, rarely far back, always inside the heartbeat."""
    ceiling = max(MIN_POLL_MS, min(MAX_POLL_MS, heartbeat_ms // 3))
    if status == TOKEN_ACTIVE:
        return max(MIN_POLL_MS, min(ceiling, active_ttl_ms // 3))
    base = ceiling if pos is None or rate <= 0 else min(ceiling, pos / rate * 1000 / 3)
    # Spread clients that entered together over +-10 %, fixed per ticket (no thundering herd).
    jitter = 0.9 + (ticket * 2654435761 % 1000) / 5000
    return int(min(ceiling, max(MIN_POLL_MS, base * jitter)))


@dataclass(frozen=True, slots=True)
class Observed:
    """One TOUCH/ENTER answer from Redis, for one token."""

    state: str
    deadline_ms: int
    frontier: int
    measured_rate: float
    now_ms: int


class RateLimiter:
    """Token buckets per key (user or client IP), in process memory, LRU-bounded.

    Per instance: with N instances behind a balancer the effective limit is up to N times this.
    A rate of 0 disables the limit.
    """

    def __init__(
        self, rate_per_s: float, *, burst: float | None = None, max_keys: int = 100_000
    ) -> None:
        self.rate = rate_per_s
        self.burst = burst if burst is not None else max(1.0, rate_per_s * 2)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def retry_after(self, key: str, now: float) -> float:
        """Take one token for `key`; 0 if allowed, else seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1 - tokens) / self.rate
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait
