"""The reservation HTTP API (aiohttp, served by the Faust worker after table recovery)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from aiokafka.errors import KafkaError

from services.reservation.context import Reservations, now_ms
from services.reservation.core import EXPIRED, HELD, PENDING, STATUSES, Reservation
from services.reservation.ids import ReservationRef, payment_id_for
from services.reservation.routing import ROUTED, forward, owner_url
from services.reservation.store import Concert
from shared.errors import InvalidRequest, RateLimited, ServiceError, Unavailable
from shared.events import (
    ConcertCreated,
    PaymentRequested,
    ReservationRequested,
    seat_key,
    utc_iso,
)
from shared.faust_web import service_app
from shared.http import (
    json_response,
    read_json_object,
    require_id,
)
from shared.ids import ID_RULE, is_valid_id
from shared.redis_client import AnyRedis

CTX = web.AppKey("reservations", Reservations)
HTTP = web.AppKey("http", aiohttp.ClientSession)
MAX_WAIT_MS = 10_000
MAX_SEATS = 100_000


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class HoldExpired(ServiceError):
    status = 410
    code = "hold_expired"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


def _int_field(body: dict[str, Any], name: str, low: int, high: int) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}", field=name)
    return value


async def _concert(ctx: Reservations, concert_id: str) -> Concert:
    concert = await ctx.store.concert(concert_id)
    if concert is None:
        raise NotFound(f"no concert {concert_id!r}", field="concert_id")
    return concert


async def _acked(ctx: Reservations, topic: str, message: Any) -> None:
    """Publish and wait for the broker's acknowledgement: a 202 means durably accepted."""
    try:
        async with asyncio.timeout(ctx.settings.infra.kafka_send_timeout_s):
            await (await ctx.publish(topic, message))
    except (TimeoutError, OSError, KafkaError) as exc:
        raise Unavailable(f"the event log is unavailable ({type(exc).__name__}), retry") from None


async def create_concert(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    auth = request.headers.get("Authorization", "")
    expected = f"Bearer {ctx.settings.admin_token}"
    if not hmac.compare_digest(auth.encode(), expected.encode()):
        raise Unauthorized("admin bearer token required")
    body = await read_json_object(request)
    concert = Concert(
        require_id(body, "concert_id"),
        _int_field(body, "seats", 1, MAX_SEATS),
        _int_field(body, "price", 0, 10**9),
    )
    if not await ctx.store.create_concert(concert):
        raise Conflict(f"concert {concert.concert_id!r} already exists")
    event = ConcertCreated(
        event_id=f"concert:{concert.concert_id}",
        occurred_at=utc_iso(now_ms()),
        concert_id=concert.concert_id,
        seats=concert.seats,
        price=concert.price,
    )
    try:
        await _acked(ctx, "concert.created", event)
    except Unavailable:
        await ctx.store.forget_concert(concert.concert_id)
        raise
    return json_response(
        {"concert_id": concert.concert_id, "seats": concert.seats, "price": concert.price}, 201
    )


async def reserve(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await read_json_object(request)
    concert_id = require_id(body, "concert_id")
    seat_id = require_id(body, "seat_id")
    user_id = require_id(body, "user_id")
    token = request.headers.get("Queue-Token", "")
    concert = await _concert(ctx, concert_id)
    if not seat_id.isdigit() or not 1 <= int(seat_id) <= concert.seats or seat_id[0] == "0":
        raise NotFound(f"concert {concert_id!r} has no seat {seat_id!r}", field="seat_id")
    claims = (await ctx.room.validate(token, concert_id=concert_id, user_id=user_id)).claims
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None and not is_valid_id(idempotency_key):
        raise InvalidRequest(f"Idempotency-Key must be {ID_RULE}", field="Idempotency-Key")
    rid = ctx.ids.new(concert_id, seat_id, user_id, idempotency_key)
    s = ctx.settings
    ttl_ms = int(s.seat_hold_s * 1000) + 60_000  # pending + held, plus a margin
    if not await ctx.store.take_hold(
        concert_id, user_id, rid, ttl_ms=ttl_ms, limit=s.max_holds_per_user
    ):
        raise RateLimited(
            f"at most {s.max_holds_per_user} seats may be held at once per user and concert",
            retry_after_s=5,
        )
    message = ReservationRequested(
        event_id=f"req:{rid}",
        occurred_at=utc_iso(now_ms()),
        reservation_id=rid,
        concert_id=concert_id,
        seat_id=seat_id,
        user_id=user_id,
        queue_ticket=claims.ticket,
        price=concert.price,
    )
    try:
        await _acked(ctx, "reservation.requested", message)
    except Unavailable:
        with contextlib.suppress(ServiceError):
            await ctx.store.release_hold(concert_id, user_id, rid)
        raise
    return json_response({"reservation_id": rid, "status": PENDING}, 202)


def _ref(ctx: Reservations, reservation_id: str) -> ReservationRef:
    ref = ctx.ids.parse(reservation_id)
    if ref is None:
        raise NotFound("no such reservation", field="reservation_id")
    return ref


def _view(reservation_id: str, ref: ReservationRef, r: Reservation | None) -> dict[str, Any]:
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


async def _elsewhere(request: web.Request, ref: ReservationRef) -> web.Response | None:
    """The owner's answer when another worker owns this seat's partition, else None."""
    if ROUTED in request.headers:
        return None
    ctx = request.app[CTX]
    target = owner_url(ctx.app, seat_key(ref.concert_id, ref.seat_id))
    if target is None:
        return None
    me = str(ctx.app.conf.canonical_url)
    return await forward(request.app[HTTP], request, target, me)


async def get_reservation(request: web.Request) -> web.Response:
    """`?wait_ms=N` long-polls while the status is still `?seen=` (default: pending)."""
    ctx = request.app[CTX]
    rid = request.match_info["reservation_id"]
    ref = _ref(ctx, rid)
    if (routed := await _elsewhere(request, ref)) is not None:
        return routed
    raw_wait = request.query.get("wait_ms", "0")
    if not raw_wait.isdigit() or int(raw_wait) > MAX_WAIT_MS:
        raise InvalidRequest(f"wait_ms must be an integer from 0 to {MAX_WAIT_MS}", field="wait_ms")
    seen = request.query.get("seen", PENDING)
    if seen not in STATUSES:
        raise InvalidRequest(f"seen must be one of {', '.join(STATUSES)}", field="seen")
    key = seat_key(ref.concert_id, ref.seat_id)
    current = ctx.reservation(key, rid)
    deadline = asyncio.get_running_loop().time() + int(raw_wait) / 1000
    while (current.status if current else PENDING) == seen:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ctx.waiters[rid].append(fut)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fut, left)
        current = ctx.reservation(key, rid)
    return json_response(_view(rid, ref, current))


async def pay(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    rid = request.match_info["reservation_id"]
    ref = _ref(ctx, rid)
    if (routed := await _elsewhere(request, ref)) is not None:
        return routed
    body = await read_json_object(request)
    user_id = require_id(body, "user_id")
    if user_id != ref.user_id:
        raise Forbidden("this reservation belongs to another user")
    await ctx.room.validate(
        request.headers.get("Queue-Token", ""), concert_id=ref.concert_id, user_id=user_id
    )
    r = ctx.reservation(seat_key(ref.concert_id, ref.seat_id), rid)
    if r is None or r.status == PENDING:
        raise Conflict("the seat is not held yet; wait for status held", status="pending")
    if r.status == EXPIRED:
        raise HoldExpired("the hold on this seat expired")
    if r.status != HELD:
        raise Conflict(f"the seat is not held by this reservation ({r.status})", status=r.status)
    payment_id = payment_id_for(rid)
    message = PaymentRequested(
        event_id=f"pay:{rid}",
        occurred_at=utc_iso(now_ms()),
        reservation_id=rid,
        concert_id=r.concert_id,
        seat_id=r.seat_id,
        user_id=r.user_id,
        payment_id=payment_id,
        amount=r.price,
    )
    await _acked(ctx, "payment.requested", message)
    return json_response({"payment_id": payment_id, "status": PENDING}, 202)


def create_web_app(ctx: Reservations, redis: AnyRedis) -> web.Application:
    app = service_app(ctx.registry, ready=ctx.store.ping)
    app[CTX] = ctx

    async def resources(app: web.Application) -> AsyncIterator[None]:
        app[HTTP] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        yield
        await app[HTTP].close()
        await redis.aclose()

    app.cleanup_ctx.append(resources)
    app.router.add_post("/v1/concerts", create_concert)
    app.router.add_post("/v1/reservations", reserve)
    app.router.add_get("/v1/reservations/{reservation_id}", get_reservation)
    app.router.add_post("/v1/reservations/{reservation_id}/payment", pay)
    return app
