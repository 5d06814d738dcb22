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
SETTLED_MARGIN, UNSETTLED_MARGIN = 0.10, 0.25  # the ETA range around pos / rate
MAX_POLL_MS = 30_000  # far back in a long line: every 30 s at most, within heartbeat / 3


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def position(ticket: int, frontier: int) -> int:
    """Place in line, 1 = next. O(1); an upper bound when waiters ahead have left early."""
    return max(1, ticket - frontier)


def eta_seconds(pos: int, measured_rate: float, configured_rate: float) -> list[int] | None:
    """A range, from the pace measured so far and the pace admission is set to: wide while
    they differ (the controller is moving the rate, or admission has just started), narrowing
    to +-10 % as the measured rate settles on the set one. +-25 % when only one is known; None
    when the gate is closed and nothing moves."""
    rates = [r for r in (measured_rate, configured_rate) if r > 0.01]
    if not rates:
        return None
    fast, slow = max(rates), min(rates)
    margin = SETTLED_MARGIN if len(rates) == 2 else UNSETTLED_MARGIN
    return [math.floor(pos / fast * (1 - margin)), math.ceil(pos / slow * (1 + margin))]


def poll_ceiling_ms(heartbeat_ms: int) -> int:
    """The longest a waiting fan is told to wait between polls: a third of the heartbeat, at
    most MAX_POLL_MS. A fan admitted just after a poll checks in at most this much later, so an
    admitted token's first deadline is this much later too (PROMOTE's first_grace_ms)."""
    return max(MIN_POLL_MS, min(MAX_POLL_MS, heartbeat_ms // 3))


def poll_after_ms(
    status: str, pos: int | None, rate: float, *, heartbeat_ms: int, active_ttl_ms: int, ticket: int
) -> int:
    """When to poll again: soon near the front, rarely far back, always inside the heartbeat."""
    ceiling = poll_ceiling_ms(heartbeat_ms)
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


SHED_GRACE = 3  # heartbeats a waiter may miss while the queue itself is refusing requests


@dataclass(slots=True)
class Shedding:
    """When this queue instance last answered a request 503 (it shed load, or Redis was out of
    reach). A fan who kept polling through that must not lose their place for the polls the
    queue refused: while it shed within the last heartbeat, a waiter is dropped only after
    SHED_GRACE heartbeats without a word."""

    last_ms: float | None = None

    def mark(self, now_ms: float) -> None:
        self.last_ms = now_ms

    def drop_after_ms(self, heartbeat_ms: int, now_ms: float) -> int:
        if self.last_ms is not None and now_ms - self.last_ms <= heartbeat_ms:
            return heartbeat_ms * SHED_GRACE
        return heartbeat_ms


def burst_for(rate_per_s: float) -> int:
    """Token-bucket depth: a tenth of a second of admissions, at least one; 0 = gate closed."""
    return max(1, int(rate_per_s / 10)) if rate_per_s > 0 else 0


# --- Admission control: the admit rate follows what the pipeline behind the queue can take.


@dataclass(frozen=True, slots=True)
class Health:
    """What the pipeline says about itself (the freshest report of each worker, combined): how
    long events wait before they are handled (the worst worker's delay, in ms) and how many
    reservation requests it refused with 503 in its last report period. None: nobody reported."""

    delay_ms: float
    refused: int


@dataclass(frozen=True, slots=True)
class ControlLaw:
    """AIMD with a dead band and a cooldown.

    - healthy (delay under `low_ms`, nothing refused): add `step_per_s` per second, up to the
      ceiling (QUEUE_ADMIT_PER_S);
    - in the band between `low_ms` and `high_ms`: hold, so a rate that fits is kept;
    - behind (delay over `high_ms`) or refusing: multiply by `backoff`, at most once per
      `cooldown_ms` (the pipeline needs that long to show the effect of a cut), never under the
      floor, so the line always moves;
    - silent (no worker reported): treated as behind, since fans admitted into a pipeline that
      cannot be seen working would only see their tokens expire.
    """

    floor: float
    ceiling: float
    low_ms: float = 250.0
    high_ms: float = 500.0
    step_per_s: float = 0.0  # 0: a twentieth of the ceiling per second
    backoff: float = 0.7
    cooldown_ms: int = 2000

    @property
    def step(self) -> float:
        return self.step_per_s or max(1.0, self.ceiling / 20)


@dataclass(frozen=True, slots=True)
class Controlled:
    rate: float
    reason: str  # healthy | holding | behind | refusing | silent
    decreased_at_ms: int


def next_rate(
    law: ControlLaw,
    rate: float,
    health: Health | None,
    *,
    elapsed_ms: int,
    now_ms: int,
    decreased_at_ms: int,
) -> Controlled:
    """The admit rate for the next control period, from the current one and the pipeline's
    health; always within [floor, ceiling]."""
    floor, ceiling = min(law.floor, law.ceiling), law.ceiling
    rate = min(ceiling, max(floor, rate))
    if health is None:
        trouble = "silent"
    elif health.refused > 0:
        trouble = "refusing"
    elif health.delay_ms > law.high_ms:
        trouble = "behind"
    else:
        trouble = ""
    if trouble:
        if now_ms - decreased_at_ms < law.cooldown_ms:
            return Controlled(rate, trouble, decreased_at_ms)  # the last cut is still landing
        return Controlled(max(floor, rate * law.backoff), trouble, now_ms)
    assert health is not None
    if health.delay_ms > law.low_ms:
        return Controlled(rate, "holding", decreased_at_ms)
    grown = min(ceiling, rate + law.step * max(0, elapsed_ms) / 1000)
    return Controlled(grown, "healthy", decreased_at_ms)


def combined_health(
    reports: list[tuple[float, int, int]], now_ms: int, max_age_ms: int
) -> Health | None:
    """The pipeline's health from its workers' reports (delay ms, refused, reported at ms):
    the worst delay and all refusals of the reports fresher than `max_age_ms`; None if none is."""
    fresh = [(d, r) for d, r, at in reports if now_ms - at <= max_age_ms]
    if not fresh:
        return None
    return Health(max(d for d, _ in fresh), sum(r for _, r in fresh))
