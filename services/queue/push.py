"""Queue positions pushed to fans over Server-Sent Events: one reader per process and concert.

A fan who follows their token (`GET /v1/queue/tokens/{token}/events`) costs no Redis call of
their own while they wait. Every `every_s` the process reads each watched concert's gate once
(WATCH: the line's front, its pace, the sale), renewing the heartbeat of the fans watching it at
most every `renew_every_s`; each fan's position is computed from that read in memory. Only a fan
who reaches the front costs one TOUCH, to learn whether they were admitted. A stream ends with
the fan's final status: active, sold out, or gone.

A fan is woken at once when their status may change (they reached the front, or the sale
changed: paused, reopened, sold out); a mere move in line reaches them when it is due, at the
pace `poll_after_ms` sets for polling (soon near the front, rarely far back). So a stream never
costs more than polling would, and 50,000 fans far back are not all woken every tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from services.queue.core import Observed
from services.queue.store import Gate, QueueStore
from shared.errors import DomainError, Unavailable
from shared.sse import KEEPALIVE_S, Gone, keepalive, open_stream, send
from shared.tokens import TOKEN_WAITING, TokenClaims

log = logging.getLogger(__name__)

# What a fan sees change; `expires_at` and `poll_after_ms` move on every read and are not news.
NEWS = ("status", "position", "eta_seconds", "sale")
RENEW_BATCH = 2000  # heartbeats renewed per WATCH call


@dataclass(eq=False)
class Watcher:
    """One open stream: the latest gate read for its concert, and a flag that one arrived."""

    user_id: str
    ticket: int
    due: float = 0.0  # monotonic time of the next routine update
    gate: Gate | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, gate: Gate) -> None:
        self.gate = gate
        self.arrived.set()

    async def next(self, timeout_s: float) -> Gate | None:
        """The next gate read, or None after `timeout_s` without one."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.arrived.wait(), timeout_s)
        if not self.arrived.is_set():
            return None
        self.arrived.clear()
        return self.gate


class Push:
    def __init__(self, store: QueueStore, *, every_s: float, renew_every_s: float) -> None:
        self.store = store
        self.every_s, self.renew_every_s = every_s, renew_every_s
        self.rooms: dict[str, set[Watcher]] = {}
        self._renewed: dict[str, float] = {}
        self._sale: dict[str, str] = {}
        self._stop = asyncio.Event()
        self.closing = False

    @property
    def watching_count(self) -> int:
        return sum(len(w) for w in self.rooms.values())

    @contextlib.contextmanager
    def watching(self, claims: TokenClaims) -> Iterator[Watcher]:
        watcher = Watcher(claims.user_id, claims.ticket)
        self.rooms.setdefault(claims.concert_id, set()).add(watcher)
        try:
            yield watcher
        finally:
            room = self.rooms.get(claims.concert_id)
            if room is not None:
                room.discard(watcher)
                if not room:
                    del self.rooms[claims.concert_id]
                    self._renewed.pop(claims.concert_id, None)
                    self._sale.pop(claims.concert_id, None)

    async def tick(self, now: float) -> None:
        """One WATCH per watched concert; its watchers get the result when it is news for them
        (front reached, sale changed) or their routine update is due."""
        for concert_id, room in list(self.rooms.items()):
            renew: list[str] = []
            if now - self._renewed.get(concert_id, 0.0) >= self.renew_every_s:
                renew = sorted({w.user_id for w in room})
                self._renewed[concert_id] = now
            batches = [renew[i : i + RENEW_BATCH] for i in range(0, len(renew), RENEW_BATCH)]
            for batch in batches[:-1]:  # in slices: Redis is never blocked for long
                await self.store.watch(concert_id, batch)
            gate = await self.store.watch(concert_id, batches[-1] if batches else [])
            sale_changed = gate.sale != self._sale.get(concert_id, gate.sale)
            self._sale[concert_id] = gate.sale
            for watcher in list(room):
                if sale_changed or watcher.ticket <= gate.frontier or now >= watcher.due:
                    watcher.offer(gate)

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.tick(time.monotonic())
            except Unavailable:
                log.warning("queue push paused: Redis unavailable")
            except Exception:
                log.exception("queue push tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.every_s)

    def close(self) -> None:
        """Draining: every stream ends now (its browser reconnects to another instance)."""
        self.closing = True
        for room in self.rooms.values():
            for watcher in room:
                watcher.arrived.set()

    def stop(self) -> None:
        self.close()
        self._stop.set()


def news(view: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(view.get(k) for k in NEWS)


def error_event(exc: DomainError) -> dict[str, Any]:
    return {"error": {"code": exc.code, "message": exc.message, **exc.extra}}


async def follow(
    request: web.Request,
    push: Push,
    claims: TokenClaims,
    first: dict[str, Any],
    view_of: Callable[[Observed, str], dict[str, Any]],
    touch: Callable[[], Awaitable[Observed]],
) -> web.StreamResponse:
    """Stream `first`, then every change, until the fan's status is final or they leave.
    `view_of(seen, sale)` is the token's answer; `touch` raises the DomainError of a token that
    has ended (sent as a `gone` event)."""
    response = await open_stream(request)
    try:
        await send(response, "status", first)
        if first["status"] != "waiting":
            return response
        last = news(first)
        if push.closing:
            return response
        with push.watching(claims) as watcher:
            while True:
                gate = await watcher.next(KEEPALIVE_S)
                if push.closing:
                    return response
                if gate is None:
                    await keepalive(response)
                    continue
                if claims.ticket > gate.frontier:  # in line (sold out: the view says so)
                    seen = Observed(
                        TOKEN_WAITING, 0, gate.frontier, gate.measured_rate, gate.now_ms
                    )
                else:  # at the front: admitted, or gone?
                    try:
                        seen = await touch()
                    except Unavailable:
                        continue  # the next read tries again
                    except DomainError as exc:
                        await send(response, "gone", error_event(exc))
                        return response
                view = view_of(seen, gate.sale)
                watcher.due = time.monotonic() + (view.get("poll_after_ms") or 0) / 1000
                if news(view) != last:
                    await send(response, "status", view)
                    last = news(view)
                if view["status"] != "waiting":
                    return response
    except Gone:
        return response
