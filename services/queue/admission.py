"""The admission loop: every instance promotes every known concert each tick.

Running it on several instances at once is safe: the PROMOTE script is atomic and the token
bucket lives in Redis, so extra instances only add redundancy, never extra admissions.

With QUEUE_ADMIT_CONTROL=pipeline (the default) the rate follows the pipeline: once a control
period, the loop reads the pipeline's health reports (shared/pipeline_health.py) and each
concert's last decision, computes the next rate with the pure law (`core.next_rate`), and stores
it with a compare-and-set, so with several instances one decision per period wins and every
instance admits at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from services.queue.core import (
    Health,
    Shedding,
    burst_for,
    combined_health,
    next_rate,
    poll_ceiling_ms,
)
from services.queue.metrics import QueueMetrics
from services.queue.model import SALE_OPEN, SALE_PAUSED, SALE_SOLD_OUT
from services.queue.settings import QueueSettings
from services.queue.store import QueueStore
from shared.errors import Unavailable
from shared.pipeline_health import MAX_AGE_MS, HealthReader
from shared.redis_client import UNAVAILABLE_ERRORS, unavailable

log = logging.getLogger(__name__)
REFRESH_CONCERTS_S = 1.0
CONTROL_PERIOD_MS = 1000
REASONS = ("healthy", "holding", "behind", "refusing", "silent")
SALE_STATES = (SALE_OPEN, SALE_PAUSED, SALE_SOLD_OUT)


class Admission:
    def __init__(
        self,
        store: QueueStore,
        settings: QueueSettings,
        metrics: QueueMetrics,
        health: HealthReader | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.health = health if settings.admit_control == "pipeline" else None
        self.known: set[str] = set()
        self.rates: dict[str, float] = {}  # the controlled rate of each concert, this period
        self.sales: dict[str, str] = {}  # each concert's sale state, as of this instance's tick
        self.shedding = Shedding()  # when this instance last answered 503 (its HTTP shell marks)
        self._refreshed = 0.0
        self._controlled = 0.0
        self._stop = asyncio.Event()

    def rate_of(self, concert_id: str) -> float:
        """What to admit at: the controller's rate, or QUEUE_ADMIT_PER_S when fixed. A concert
        the controller has not seen yet starts at a quarter of the ceiling."""
        s = self.settings
        if self.health is None:
            return s.admit_per_s
        return self.rates.get(concert_id, max(s.control_law.floor, s.admit_per_s / 4))

    async def remember(self, concert_id: str) -> None:
        """Record a concert as having a queue (once per instance)."""
        if concert_id not in self.known:
            await self.store.register_concert(concert_id)
            self.known.add(concert_id)

    async def tick(self) -> None:
        now = time.monotonic()
        if now - self._refreshed >= REFRESH_CONCERTS_S:
            self.known |= await self.store.concerts()
            self._refreshed = now
        concerts = list(self.known)
        if self.health is not None and now - self._controlled >= CONTROL_PERIOD_MS / 1000:
            self._controlled = now
            await self.control(concerts)
        await asyncio.gather(*(self.promote(c) for c in concerts))

    async def control(self, concerts: list[str]) -> None:
        """One control period: the pipeline's health once, then each concert's next rate."""
        assert self.health is not None
        try:
            now_ms, reports = await self.health.read()
        except UNAVAILABLE_ERRORS as exc:
            raise unavailable(exc, "the waiting room") from None
        health = combined_health(reports, now_ms, MAX_AGE_MS)
        self.metrics.pipeline_delay.set(-1 if health is None else health.delay_ms)
        await asyncio.gather(*(self.control_one(c, health) for c in concerts))

    async def control_one(self, concert_id: str, health: Health | None) -> None:
        state = await self.store.control_state(concert_id)
        rate = self.rate_of(concert_id) if state.rate is None else state.rate
        reason = state.reason
        if state.now_ms - state.decided_at_ms >= CONTROL_PERIOD_MS * 0.9:
            elapsed = (
                state.now_ms - state.decided_at_ms if state.decided_at_ms else CONTROL_PERIOD_MS
            )
            d = next_rate(
                self.settings.control_law,
                rate,
                health,
                elapsed_ms=min(elapsed, 2 * CONTROL_PERIOD_MS),  # no leap after a pause
                now_ms=state.now_ms,
                decreased_at_ms=state.decreased_at_ms,
            )
            stored = await self.store.decide_rate(
                concert_id, state.decided_at_ms, d.rate, d.decreased_at_ms, d.reason
            )
            if stored:
                rate, reason = d.rate, d.reason
        self.rates[concert_id] = rate
        self.metrics.admit_target.labels(concert_id).set(rate)
        for r in REASONS:
            self.metrics.admit_reason.labels(concert_id, r).set(1 if r == reason else 0)

    async def promote(self, concert_id: str) -> None:
        s = self.settings
        rate = self.rate_of(concert_id)
        r = await self.store.promote(
            concert_id,
            admit_per_s=rate,
            max_active=s.max_active,
            active_ttl_ms=int(s.tokens.active_ttl_s * 1000),
            heartbeat_ms=self.shedding.drop_after_ms(
                int(s.tokens.wait_heartbeat_s * 1000), time.monotonic() * 1000
            ),
            burst=burst_for(rate),
            first_grace_ms=poll_ceiling_ms(int(s.tokens.wait_heartbeat_s * 1000)),
        )
        if r.gone:  # the concert's keys reached their retention and expired
            await self.store.forget_concert(concert_id)
            self.known.discard(concert_id)
            self.rates.pop(concert_id, None)
            self.sales.pop(concert_id, None)
            m = self.metrics
            for gauge in (m.waiting, m.active, m.admission_rate, m.admit_target):
                with contextlib.suppress(KeyError):
                    gauge.remove(concert_id)
            for reason in REASONS:
                with contextlib.suppress(KeyError):
                    m.admit_reason.remove(concert_id, reason)
            for state in SALE_STATES:
                with contextlib.suppress(KeyError):
                    m.sale.remove(concert_id, state)
            return
        before = self.sales.get(concert_id, SALE_OPEN)
        if r.sale != before:
            log.warning("concert %s: sale %s -> %s", concert_id, before, r.sale)
        self.sales[concert_id] = r.sale
        for state in SALE_STATES:
            self.metrics.sale.labels(concert_id, state).set(1 if state == r.sale else 0)
        self.metrics.admitted.inc(r.admitted)
        self.metrics.expired.inc(r.expired)
        self.metrics.dropped.inc(r.dropped)
        self.metrics.waiting.labels(concert_id).set(r.waiting)
        self.metrics.active.labels(concert_id).set(r.active)
        self.metrics.admission_rate.labels(concert_id).set(r.measured_rate)

    async def run(self) -> None:
        """Tick until stop(): a tick in flight always finishes (no Redis call cut in half)."""
        while not self._stop.is_set():
            pause = self.settings.admission_interval_s
            try:
                await self.tick()
            except Unavailable:
                log.warning("admission paused: Redis unavailable")
                pause = 1.0
            except Exception:
                log.exception("admission tick failed")
                pause = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), pause)

    def stop(self) -> None:
        self._stop.set()
