"""The admission loop: every instance promotes every known concert each tick.

Running it on several instances at once is safe: the PROMOTE script is atomic and the token
bucket lives in Redis, so extra instances only add redundancy, never extra admissions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from services.queue.metrics import QueueMetrics
from services.queue.settings import QueueSettings
from services.queue.store import QueueStore
from shared.errors import Unavailable

log = logging.getLogger(__name__)
REFRESH_CONCERTS_S = 1.0


class Admission:
    def __init__(self, store: QueueStore, settings: QueueSettings, metrics: QueueMetrics) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.known: set[str] = set()
        self._refreshed = 0.0
        self._stop = asyncio.Event()

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
        await asyncio.gather(*(self.promote(c) for c in concerts))

    async def promote(self, concert_id: str) -> None:
        s = self.settings
        r = await self.store.promote(
            concert_id,
            admit_per_s=s.admit_per_s,
            max_active=s.max_active,
            active_ttl_ms=int(s.tokens.active_ttl_s * 1000),
            heartbeat_ms=int(s.tokens.wait_heartbeat_s * 1000),
            burst=s.admit_burst,
        )
        if r.gone:  # the concert's keys reached their retention and expired
            await self.store.forget_concert(concert_id)
            self.known.discard(concert_id)
            for gauge in (self.metrics.waiting, self.metrics.active, self.metrics.admission_rate):
                with contextlib.suppress(KeyError):
                    gauge.remove(concert_id)
            return
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
