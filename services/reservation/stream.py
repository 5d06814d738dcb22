"""A reservation's status pushed to its fan as it changes (Server-Sent Events).

`GET /v1/reservations/{id}/events` with the fan's Queue-Token: a `status` event now, then one
per change (pending -> held -> confirmed, or what ended it), and the stream ends at a final
status. It costs nothing per fan beyond the stream itself: the worker owning the seat is woken by
its own seat agent (context.Waiters), the one consumer of the seat's facts in this process. On
another worker, each step is a long-poll to the owner.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from services.reservation.core import TERMINAL
from services.reservation.ids import ReservationRef
from services.reservation.lookup import (
    require_owner,
    reservation_ref,
    reservation_view,
    status_after,
)
from services.reservation.routing import ROUTED, owner_url
from services.reservation.web import CTX, HTTP, MAX_WAIT_MS
from shared.errors import Unavailable
from shared.events import seat_key
from shared.sse import Gone, keepalive, open_stream, send

NOTHING_SEEN = ""  # the first step answers at once


async def reservation_events(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    rid = request.match_info["reservation_id"]
    ref = reservation_ref(ctx, rid)
    require_owner(ctx, request, ref)  # a stranger gets a plain 403, not a stream
    response = await open_stream(request)
    seen = NOTHING_SEEN
    try:
        while not ctx.waiters.draining:
            try:
                view = await _step(request, ref, rid, seen)
            except Unavailable:
                await keepalive(response)
                continue
            if view["status"] == seen:
                await keepalive(response)
                continue
            await send(response, "status", view)
            seen = view["status"]
            if seen in TERMINAL:
                break
    except Gone:
        pass
    return response


async def _step(request: web.Request, ref: ReservationRef, rid: str, seen: str) -> dict[str, Any]:
    """The reservation once its status is no longer `seen` (or after MAX_WAIT_MS)."""
    ctx = request.app[CTX]
    wait_ms = 0 if seen == NOTHING_SEEN else MAX_WAIT_MS
    target = owner_url(ctx.app, seat_key(ref.concert_id, ref.seat_id))
    if target is None:
        current = await status_after(ctx, ref, rid, seen or "-", wait_ms)
        return reservation_view(rid, ref, current)
    query = f"?wait_ms={wait_ms}" + (f"&seen={seen}" if seen else "")
    headers = {"Queue-Token": request.headers.get("Queue-Token", "")}
    headers[ROUTED] = str(ctx.app.conf.canonical_url)
    try:
        async with request.app[HTTP].get(
            f"{target}/v1/reservations/{rid}{query}", headers=headers
        ) as answer:
            if answer.status != 200:
                raise Unavailable("the worker owning this seat did not answer")
            body: dict[str, Any] = await answer.json()
            return body
    except (aiohttp.ClientError, TimeoutError):
        raise Unavailable("the worker owning this seat is unreachable") from None
