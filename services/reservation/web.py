"""The reservation HTTP API (aiohttp, served by the Faust worker after table recovery)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from services.reservation.catalog import Concert, Creation, creation
from services.reservation.context import Reservations, now_ms
from services.reservation.core import (
    EXPIRED,
    HELD,
    PENDING,
    STATUSES,
)
from services.reservation.ids import ReservationRef, payment_id_for
from services.reservation.lookup import (
    require_owner,
    reservation_ref,
    reservation_view,
    status_after,
)
from services.reservation.publishing import publish_acked
from services.reservation.routing import ROUTED, forward, owner_url
from shared.contracts import ASYNCAPI_FILE, SCHEMA_FILE
from shared.errors import (
    Conflict,
    Forbidden,
    HoldExpired,
    InvalidRequest,
    NotFound,
    Overloaded,
    RateLimited,
    Unauthorized,
    Unavailable,
)
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
    query_int,
    read_json_object,
    require_id,
)
from shared.ids import ID_RULE, is_valid_id
from shared.redis_client import AnyRedis, load_scripts
from shared.serving import DRAIN
from shared.waiting_room import require_active

CTX = web.AppKey("reservations", Reservations)
HTTP = web.AppKey("http", aiohttp.ClientSession)
OPENAPI = Path(__file__).with_name("openapi.json")  # served at /openapi.json
MAX_WAIT_MS = 10_000
MAX_SEATS = 100_000
SHED_RETRY_AFTER_S = 5
UNDO_GRACE_S = 5.0  # at shutdown, how long late undos (a refused request's hold) may still run


def _int_field(body: dict[str, Any], name: str, low: int, high: int) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}", field=name)
    return value


async def _concert(ctx: Reservations, concert_id: str) -> Concert:
    # The catalog folded from the log first; Redis knows a concert created a moment ago on
    # another worker whose record this worker has not read yet.
    concert = ctx.catalog.get(concert_id) or await ctx.store.concert(concert_id)
    if concert is None:
        raise NotFound(f"no concert {concert_id!r}", field="concert_id")
    return concert


async def create_concert(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    auth = request.headers.get("Authorization", "")
    expected = f"Bearer {ctx.settings.admin_token}"
    if not hmac.compare_digest(auth.encode(), expected.encode()):
        raise Unauthorized("admin bearer token required")
    body = await read_json_object(request)
    wanted = Concert(
        require_id(body, "concert_id"),
        _int_field(body, "seats", 1, MAX_SEATS),
        _int_field(body, "price", 0, 10**9),
    )
    if not ctx.catalog.caught_up.is_set():
        raise Unavailable("the concert catalog is still being read from the log, retry")
    decided = creation(ctx.catalog.get(wanted.concert_id), wanted)
    if decided is Creation.NEW and not await ctx.store.create_concert(wanted):
        # Another request holds the creation lock, or Redis remembers a creation the log
        # does not have yet: compare with what it is creating.
        decided = creation(await ctx.store.concert(wanted.concert_id), wanted)
    if decided is Creation.CONFLICT:
        raise Conflict(f"concert {wanted.concert_id!r} already exists with other seats or price")
    if decided is Creation.SAME:
        return _concert_response(wanted, 200)
    event = ConcertCreated(
        event_id=f"concert:{wanted.concert_id}",
        occurred_at=utc_iso(now_ms()),
        concert_id=wanted.concert_id,
        seats=wanted.seats,
        price=wanted.price,
    )
    await publish_acked(
        ctx,
        "concert.created",
        event,
        undo=lambda: ctx.store.forget_concert(wanted.concert_id),
        concert_id=wanted.concert_id,
    )
    # The log decides: answer 201 only once it holds this very concert.
    known = await ctx.catalog.until_known(
        wanted.concert_id, ctx.settings.infra.kafka_send_timeout_s
    )
    if known is None:
        raise Unavailable("the concert was sent but is not readable from the log yet, retry")
    if known != wanted:
        raise Conflict(f"concert {wanted.concert_id!r} already exists with other seats or price")
    return _concert_response(wanted, 201)


def _concert_response(concert: Concert, status: int) -> web.Response:
    body = {"concert_id": concert.concert_id, "seats": concert.seats, "price": concert.price}
    return json_response(body, status)


def _shed(ctx: Reservations) -> None:
    """Refuse a new reservation at once while the pipeline is saturated (see `Pressure`)."""
    reason = ctx.pressure.refusal(ctx.settings.shed_delay_ms, ctx.settings.max_in_flight)
    if reason:
        ctx.metrics.decisions.labels("ReservationRequested:shed").inc()
        # Long enough for the backlog to drain; retries coming back at once would only add to it.
        raise Overloaded(f"{reason}: too busy, retry shortly", retry_after_s=SHED_RETRY_AFTER_S)


async def reserve(request: web.Request) -> web.Response:
    """`?wait_ms=N` answers once the seat agent has decided (held or rejected), within N ms, when
    this worker decides for the seat: one request instead of a POST and a long-poll."""
    ctx = request.app[CTX]
    _shed(ctx)
    with ctx.pressure.request():
        rid, ref = await _reserve(ctx, request)
    wait_ms = _wait_ms(request)
    if wait_ms and _decided_here(ctx, ref):
        return json_response(
            reservation_view(rid, ref, await status_after(ctx, ref, rid, PENDING, wait_ms)), 202
        )
    return json_response({"reservation_id": rid, "status": PENDING}, 202)


async def _reserve(ctx: Reservations, request: web.Request) -> tuple[str, ReservationRef]:
    """Check, take a hold slot, and publish the request; its id once the log has it."""
    _wait_ms(request)  # a bad wait_ms is refused before anything is taken
    body = await read_json_object(request)
    concert_id = require_id(body, "concert_id")
    seat_id = require_id(body, "seat_id")
    user_id = require_id(body, "user_id")
    concert = await _concert(ctx, concert_id)
    if (
        not seat_id.isascii()
        or not seat_id.isdigit()
        or not 1 <= int(seat_id) <= concert.seats
        or seat_id[0] == "0"
    ):
        raise NotFound(f"concert {concert_id!r} has no seat {seat_id!r}", field="seat_id")
    token = request.headers.get("Queue-Token", "")
    claims = ctx.room.claims_of(token, concert_id=concert_id, user_id=user_id)
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None and not is_valid_id(idempotency_key):
        raise InvalidRequest(f"Idempotency-Key must be {ID_RULE}", field="Idempotency-Key")
    rid = ctx.ids.new(concert_id, seat_id, user_id, idempotency_key)
    s = ctx.settings
    ttl_ms = int(s.seat_hold_s * 1000) + 60_000  # pending + held, plus a margin
    # One round trip: the token is checked (and renewed) and, if active, a hold slot taken.
    state, took = await ctx.store.take_hold(
        claims, ctx.room.touch_args(claims), rid, ttl_ms=ttl_ms, limit=s.max_holds_per_user
    )
    require_active(state)
    if not took:
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
    # The hold-limit entry lives until the request's outcome is known.
    await publish_acked(
        ctx,
        "reservation.requested",
        message,
        undo=lambda: ctx.store.release_hold(concert_id, user_id, rid),
        reservation_id=rid,
    )
    return rid, reservation_ref(ctx, rid)


async def from_owner(request: web.Request, ref: ReservationRef) -> web.Response | None:
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
    ref = reservation_ref(ctx, rid)
    require_owner(ctx, request, ref)
    if (routed := await from_owner(request, ref)) is not None:
        return routed
    wait_ms = _wait_ms(request)
    seen = request.query.get("seen", PENDING)
    if seen not in STATUSES:
        raise InvalidRequest(f"seen must be one of {', '.join(STATUSES)}", field="seen")
    return json_response(
        reservation_view(rid, ref, await status_after(ctx, ref, rid, seen, wait_ms))
    )


def _wait_ms(request: web.Request) -> int:
    return query_int(request, "wait_ms", default=0, low=0, high=MAX_WAIT_MS)


def _decided_here(ctx: Reservations, ref: ReservationRef) -> bool:
    """This worker owns the seat's partition, so it sees the decision as it is made."""
    return owner_url(ctx.app, seat_key(ref.concert_id, ref.seat_id)) is None


async def pay(request: web.Request) -> web.Response:
    """`?wait_ms=N` also waits, up to N ms, for the payment's outcome on the seat (confirmed,
    or whatever ended the hold): it is answered as `"reservation"`."""
    ctx = request.app[CTX]
    rid = request.match_info["reservation_id"]
    ref = reservation_ref(ctx, rid)
    if (routed := await from_owner(request, ref)) is not None:
        return routed
    wait_ms = _wait_ms(request)
    body = await read_json_object(request)
    user_id = require_id(body, "user_id")
    if user_id != ref.user_id:
        raise Forbidden("this reservation belongs to another user")
    await ctx.room.validate(
        request.headers.get("Queue-Token", ""), concert_id=ref.concert_id, user_id=user_id
    )
    r = ctx.seats.reservation(seat_key(ref.concert_id, ref.seat_id), rid)
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
    await publish_acked(
        ctx, "payment.requested", message, reservation_id=rid, payment_id=payment_id
    )
    answer: dict[str, Any] = {"payment_id": payment_id, "status": PENDING}
    if wait_ms:
        answer["reservation"] = reservation_view(
            rid, ref, await status_after(ctx, ref, rid, HELD, wait_ms)
        )
    return json_response(answer, 202)


def _static_json(body: bytes) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    return serve


def create_web_app(ctx: Reservations, redis: AnyRedis) -> web.Application:
    async def ready() -> None:
        if not ctx.catalog.caught_up.is_set():
            raise Unavailable("the concert catalog is still being read from the log")
        await ctx.store.ping()

    infra = ctx.settings.infra
    app = service_app(
        ctx.registry,
        drain_s=infra.shutdown_drain_s,
        openapi=OPENAPI,
        ready=ready,
        cors=infra.cors_allowed_origins,
    )
    app[DRAIN].on_begin(ctx.waiters.drain)  # on SIGTERM every long-poll answers now
    app[CTX] = ctx
    for contract in (ASYNCAPI_FILE, SCHEMA_FILE):  # the event contracts, for downstream teams
        app.router.add_get(f"/{contract.name}", _static_json(contract.read_bytes()))
    ctx.metrics.expect_sends_to("concert.created", "reservation.requested", "payment.requested")

    async def resources(app: web.Application) -> AsyncIterator[None]:
        await load_scripts(redis, [*ctx.store.scripts, *ctx.room.scripts])
        app[HTTP] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        tasks = [
            asyncio.create_task(ctx.catalog.run(), name="concert catalog"),
            asyncio.create_task(ctx.catalog.mirror(ctx.store.cache), name="concert cache"),
        ]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if ctx.background:  # late undos still running: finish them while Redis is open
            await asyncio.wait(set(ctx.background), timeout=UNDO_GRACE_S)
        await app[HTTP].close()  # Redis is closed by the Faust app, after its agents (app.py)

    app.cleanup_ctx.append(resources)
    app.router.add_post("/v1/concerts", create_concert)
    app.router.add_post("/v1/reservations", reserve)
    app.router.add_get("/v1/reservations/{reservation_id}", get_reservation)
    app.router.add_post("/v1/reservations/{reservation_id}/payment", pay)
    return app
