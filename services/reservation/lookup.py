"""A reservation as its owner reads it: its id checked, the owner proved, its JSON answer, and
a wait for its next status (the HTTP answers, web.py, and the event stream, stream.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from services.reservation.context import Reservations
from services.reservation.core import PENDING, Reservation, worth_waiting
from services.reservation.ids import ReservationRef
from shared.errors import Forbidden, NotFound
from shared.events import seat_key, utc_iso


def reservation_ref(ctx: Reservations, reservation_id: str) -> ReservationRef:
    ref = ctx.ids.parse(reservation_id)
    if ref is None:
        raise NotFound("no such reservation", field="reservation_id")
    return ref


def reservation_view(
    reservation_id: str, ref: ReservationRef, r: Reservation | None
) -> dict[str, Any]:
    if r is None:
        return {
            "reservation_id": reservation_id,
            "concert_id": ref.concert_id,
            "seat_id": ref.seat_id,
            "user_id": ref.user_id,
            "status": PENDING,
            "reason": None,
            "hold_expires_at": None,
            "payment_id": None,
        }
    return {
        "reservation_id": reservation_id,
        "concert_id": r.concert_id,
        "seat_id": r.seat_id,
        "user_id": r.user_id,
        "status": r.status,
        "reason": r.reason,
        "hold_expires_at": utc_iso(r.hold_expires_at_ms) if r.hold_expires_at_ms else None,
        "payment_id": r.payment_id,
    }


def require_owner(ctx: Reservations, request: web.Request, ref: ReservationRef) -> None:
    """Only the fan who reserved may look a reservation up: their Queue-Token (signed, for this
    user and concert) is the proof. It need not be active still: a fan whose seat is confirmed
    has finished their turn, and still reads the outcome."""
    claims = ctx.room.decode(request.headers.get("Queue-Token", ""))
    if (claims.user_id, claims.concert_id) != (ref.user_id, ref.concert_id):
        raise Forbidden("this reservation belongs to another user")


async def status_after(
    ctx: Reservations, ref: ReservationRef, rid: str, seen: str, wait_ms: int
) -> Reservation | None:
    """The reservation once its status is no longer `seen`, or as it is after `wait_ms`."""
    key = seat_key(ref.concert_id, ref.seat_id)
    current = ctx.seats.reservation(key, rid)
    deadline = asyncio.get_running_loop().time() + wait_ms / 1000
    while worth_waiting(current.status if current else PENDING, seen):
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0 or ctx.waiters.draining:  # shutting down: answer with the state as it is
            break
        await ctx.waiters.wait(rid, left)
        current = ctx.seats.reservation(key, rid)
    return current
