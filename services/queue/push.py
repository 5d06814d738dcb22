"""Queue positions pushed to fans over Server-Sent Events: one reader per process and concert.

A fan who follows their token (`GET /v1/queue/tokens/{token}/events`) costs no Redis call of
their own while they wait. Every `every_s` the process reads each watched concert's gate once
(WATCH: the line's front, its pace, the sale), renewing the heartbeat of the fans watching it at
most every `renew_every_s`; each fan's position is computed from that read in memory. Only a fan
who reaches the front (or whose concert sells out) costs one TOUCH, to learn what became of
them. A stream ends with the fan's final status here: active, sold out, or gone.
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
from services.queue.model import SALE_SOLD_OUT
from services.queue.store import Gate, QueueStore
from shared.errors import DomainError, Unavailable
from shared.sse import KEEPALIVE_S, Gone, keepalive, open_stream, send
from shared.tokens import TOKEN_WAITING, TokenClaims

log = logging.getLogger(__name__)

# What a fan sees change; `expires_at` and `poll_after_ms` move on every read and are not news.
NEWS = ("status", "position", "eta_seconds", "sale")


@dataclass(eq=False)
class Watcher:
    """One open stream: the latest gate read for its concert, and a flag that one arrived."""

    user_id: str
    ticket: int
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

    async def tick(self, now: float) -> None:
        """One WATCH per watched concert; every watcher of it gets the result."""
        for concert_id, room in list(self.rooms.items()):
            renew: list[str] = []
            if now - self._renewed.get(concert_id, 0.0) >= self.renew_every_s:
                renew = sorted({w.user_id for w in room})
                self._renewed[concert_id] = now
            gate = await self.store.watch(concert_id, renew)
            for watcher in list(room):
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
    view_of: Callable[[Observed], dict[str, Any]],
    touch: Callable[[], Awaitable[Observed]],
) -> web.StreamResponse:
    """Stream `first`, then every change, until the fan's status is final or they leave.
    `touch` raises the DomainError of a token that has ended (sent as a `gone` event)."""
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
                if claims.ticket > gate.frontier and gate.sale != SALE_SOLD_OUT:
                    seen = Observed(
                        TOKEN_WAITING, 0, gate.frontier, gate.measured_rate, gate.now_ms
                    )
                else:  # at the front, or the line closed: what became of this fan?
                    try:
                        seen = await touch()
                    except Unavailable:
                        continue  # the next read tries again
                    except DomainError as exc:
                        await send(response, "gone", error_event(exc))
                        return response
                view = view_of(seen)
                if news(view) != last:
                    await send(response, "status", view)
                    last = news(view)
                if view["status"] != "waiting":
                    return response
    except Gone:
        return response
