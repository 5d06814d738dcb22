"""The queue service's aiohttp shell: decode, call the store and core, encode (API in README)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from services.queue.admission import Admission
from services.queue.core import (
    Observed,
    RateLimiter,
)
from services.queue.metrics import QueueMetrics
from services.queue.model import SALE_OPEN, SALE_SOLD_OUT
from services.queue.page import add_page
from services.queue.push import Push, follow
from services.queue.seat_facts import SeatFacts
from services.queue.settings import QueueSettings
from services.queue.store import QueueStore
from services.queue.views import SALE_MESSAGES, token_view
from shared.cors import cors_middleware
from shared.errors import (
    DomainError,
    InvalidRequest,
    MethodNotAllowed,
    RateLimited,
    SoldOut,
    TokenMismatch,
    TokenNotActive,
)
from shared.http import (
    MAX_BODY_BYTES,
    Handler,
    error_middleware,
    json_response,
    publish_openapi,
    read_json_object,
    require_id,
)
from shared.identity import IdentityVerifier
from shared.ids import ID_RULE, is_valid_id
from shared.logs import request_id_middleware
from shared.metrics import HttpMetrics
from shared.pipeline_health import HealthReader
from shared.redis_client import load_scripts, service_redis
from shared.serving import DRAIN, Drain
from shared.tokens import TOKEN_ACTIVE, TOKEN_WAITING, TokenClaims, TokenCodec
from shared.waiting_room import (
    TokenState,
    WaitingRoom,
    raise_if_gone,
)


@dataclass
class Queue:
    """Everything a handler needs, built once per app."""

    settings: QueueSettings
    codec: TokenCodec
    identity: IdentityVerifier
    store: QueueStore
    room: WaitingRoom
    admission: Admission
    metrics: QueueMetrics
    per_user: RateLimiter
    per_ip: RateLimiter
    push: Push

    @property
    def drop_after_ms(self) -> int:
        """How long a waiter may go unheard before it is dropped: the heartbeat, widened while
        this instance refuses requests (core.Shedding)."""
        hb = int(self.settings.tokens.wait_heartbeat_s * 1000)
        return self.admission.shedding.drop_after_ms(hb, time.monotonic() * 1000)

    def view(
        self, token: str, claims: TokenClaims, seen: Observed, sale: str | None = None
    ) -> dict[str, object]:
        """`sale`: as just read from Redis, else as this process's admission loop last saw it."""
        s = self.settings
        return token_view(
            token,
            claims,
            seen,
            configured_rate=self.admission.rate_of(claims.concert_id),
            heartbeat_ms=int(s.tokens.wait_heartbeat_s * 1000),
            active_ttl_ms=int(s.tokens.active_ttl_s * 1000),
            sale=sale or self.admission.sales.get(claims.concert_id, SALE_OPEN),
        )

    async def touch(self, claims: TokenClaims) -> TokenState:
        """TOUCH (timed as redis_call_duration_seconds{op="touch"})."""
        with self.store.latency.labels("touch").time():
            return await self.room.touch(claims, heartbeat_ms=self.drop_after_ms)

    def client_ip(self, request: web.Request) -> str:
        forwarded = request.headers.get("X-Forwarded-For")
        if self.settings.trust_forwarded_for and forwarded:
            return forwarded.split(",")[0].strip()
        return request.remote or "unknown"

    def check_rate(self, limiter: RateLimiter, scope: str, key: str) -> None:
        wait = limiter.retry_after(key, time.monotonic())
        if wait > 0:
            self.metrics.rate_limited.labels(scope).inc()
            raise RateLimited(
                f"too many queue entries for this {scope}; retry later",
                retry_after_s=max(1, int(wait + 0.999)),
            )


QUEUE = web.AppKey("queue", Queue)
log = logging.getLogger(__name__)


def observed(state: TokenState) -> Observed:
    return Observed(state.state, state.deadline_ms, state.frontier, state.rate_per_s, state.now_ms)


async def enter(request: web.Request) -> web.Response:
    q = request.app[QUEUE]
    # The fan is who the site's login says, never who the body says.
    user_id = q.identity.user_id(request.headers.get("Authorization"))
    body = await read_json_object(request)
    concert_id = require_id(body, "concert_id")
    if "user_id" in body:
        q.identity.same_user(user_id, require_id(body, "user_id"))
    q.check_rate(q.per_ip, "client", q.client_ip(request))
    q.check_rate(q.per_user, "user", f"{concert_id}|{user_id}")
    s = q.settings
    e = await q.store.enter(
        concert_id,
        user_id,
        active_ttl_ms=int(s.tokens.active_ttl_s * 1000),
        heartbeat_ms=q.drop_after_ms,
        retention_s=s.concert_retention_s,
    )
    await q.admission.remember(concert_id)  # after entry: a registered queue always has keys
    claims = TokenClaims(concert_id, user_id, e.ticket, e.issued_ms)
    token = q.codec.encode(claims)
    (q.metrics.issued if e.created else q.metrics.reentered).inc()
    seen = Observed(e.state, e.deadline_ms, e.frontier, e.measured_rate, e.now_ms)
    return json_response(q.view(token, claims, seen), 201 if e.created else 200)


async def status(request: web.Request) -> web.Response:
    q = request.app[QUEUE]
    token = request.match_info["token"]
    state = await q.touch(q.room.decode(token))
    raise_if_gone(state)
    return json_response(q.view(token, state.claims, observed(state)))


async def status_events(request: web.Request) -> web.StreamResponse:
    """The token's status pushed as it changes (Server-Sent Events; push.py)."""
    q = request.app[QUEUE]
    token = request.match_info["token"]
    claims = q.room.decode(token)

    async def touch() -> Observed:
        state = await q.touch(claims)
        raise_if_gone(state)
        return observed(state)

    first = q.view(token, claims, await touch())  # a bad or ended token: a plain 4xx answer
    return await follow(
        request, q.push, claims, first, lambda seen, sale: q.view(token, claims, seen, sale), touch
    )


async def validate(request: web.Request) -> web.Response:
    q = request.app[QUEUE]
    token = request.match_info["token"]
    body = await read_json_object(request) if request.can_read_body else {}
    try:
        claims = q.room.decode(token)
        for field, claimed in (("concert_id", claims.concert_id), ("user_id", claims.user_id)):
            if field in body and require_id(body, field) != claimed:
                raise TokenMismatch(f"queue token is not for this {field.removesuffix('_id')}")
        state = await q.touch(claims)
        raise_if_gone(state)
        if (
            state.state == TOKEN_WAITING
            and q.admission.sales.get(claims.concert_id) == SALE_SOLD_OUT
        ):
            raise SoldOut(SALE_MESSAGES[SALE_SOLD_OUT])
        if state.state != TOKEN_ACTIVE:
            raise TokenNotActive(
                "queue token is still waiting; poll until it is active",
                position=q.view(token, claims, observed(state))["position"],
            )
    except DomainError as exc:
        q.metrics.validated.labels(exc.code).inc()
        raise
    q.metrics.validated.labels("valid").inc()
    return json_response({"valid": True, **q.view(token, claims, observed(state))})


async def complete(request: web.Request) -> web.Response:
    q = request.app[QUEUE]
    claims = q.room.decode(request.match_info["token"])
    if await q.store.complete(claims.concert_id, claims.user_id, claims.ticket) in ("w", "a"):
        q.metrics.completed.inc()
    return web.Response(status=204)


async def concert_stats(request: web.Request) -> web.Response:
    q = request.app[QUEUE]
    concert_id = request.match_info["concert_id"]
    if concert_id == "tokens":  # GET on the entry route falls through to this one
        raise MethodNotAllowed("use POST to enter the queue", allow="POST")
    if not is_valid_id(concert_id):
        raise InvalidRequest(f"concert_id must be {ID_RULE}", field="concert_id")
    st = await q.store.stats(concert_id)
    fixed = q.settings.admit_control == "fixed"
    target = q.settings.admit_per_s if fixed or st.target_rate is None else st.target_rate
    return json_response(
        {
            "concert_id": concert_id,
            "waiting": st.waiting,
            "active": st.active,
            "admitted_per_s": round(st.measured_rate, 3),
            "admit_control": q.settings.admit_control,
            "admit_per_s_target": round(target, 3),
            "admit_reason": "fixed" if fixed else (st.reason or "starting"),
            "admit_per_s_limit": q.settings.admit_per_s,
            "max_active": q.settings.max_active,
            "sale": st.sale,
        }
    )


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    request.app[DRAIN].check()
    await request.app[QUEUE].store.ping()
    return json_response({"status": "ready"})


@web.middleware
async def shedding_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Remember when this instance answered 503: fans are not dropped for polls it refused."""
    response = await handler(request)
    if response.status == 503 and QUEUE in request.app:
        request.app[QUEUE].admission.shedding.mark(time.monotonic() * 1000)
    return response


def create_app(settings: QueueSettings) -> web.Application:
    registry = CollectorRegistry()
    http_metrics = HttpMetrics(registry)
    app = web.Application(
        middlewares=[
            request_id_middleware,
            cors_middleware(settings.infra.cors_allowed_origins),
            http_metrics.middleware,
            shedding_middleware,
            error_middleware,
        ],
        client_max_size=MAX_BODY_BYTES,
    )

    async def resources(app: web.Application) -> AsyncIterator[None]:
        infra = settings.infra
        redis = service_redis(infra)
        metrics = QueueMetrics(registry)
        metrics.max_active.set(settings.max_active)
        store = QueueStore(
            redis,
            registry,
            wait_replicas=settings.wait_replicas,
            wait_timeout_ms=settings.wait_timeout_ms,
        )
        codec = TokenCodec(settings.token_secret)
        app[QUEUE] = Queue(
            settings=settings,
            codec=codec,
            identity=IdentityVerifier(settings.identity),
            store=store,
            room=WaitingRoom(
                redis,
                codec,
                active_ttl_s=settings.tokens.active_ttl_s,
                heartbeat_s=settings.tokens.wait_heartbeat_s,
            ),
            admission=Admission(store, settings, metrics, HealthReader(redis)),
            metrics=metrics,
            per_user=RateLimiter(settings.entry_rate_per_user),
            per_ip=RateLimiter(settings.entry_rate_per_ip),
            push=Push(
                store,
                every_s=settings.push_interval_s,
                renew_every_s=settings.tokens.wait_heartbeat_s / 3,
            ),
        )
        await load_scripts(redis, [*store.scripts, *app[QUEUE].room.scripts])
        loop_task = asyncio.create_task(app[QUEUE].admission.run(), name="admission")
        push_task = asyncio.create_task(app[QUEUE].push.run(), name="queue push")
        app[DRAIN].on_begin(app[QUEUE].push.close)
        seat_facts = None
        if infra.kafka_brokers:
            consumer = SeatFacts(
                infra.kafka_brokers,
                store,
                metrics,
                retention_s=settings.concert_retention_s,
                complete_tokens=settings.complete_on_confirmed,
                session_timeout_s=infra.kafka_session_timeout_s,
                fetch_min_bytes=infra.kafka_fetch_min_bytes,
                fetch_max_wait_ms=infra.kafka_fetch_max_wait_ms,
            )
            seat_facts = asyncio.create_task(consumer.run(), name="seat facts")
        else:
            log.warning(
                "KAFKA_BROKERS is not set: this queue does not follow seat facts "
                "(no sell-out, no token completion on seat.confirmed)"
            )
        yield
        if seat_facts is not None:
            seat_facts.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await seat_facts
        app[QUEUE].admission.stop()
        app[QUEUE].push.stop()
        await push_task
        try:
            await asyncio.wait_for(loop_task, 5.0)
        except TimeoutError:
            log.warning("admission loop did not stop within 5 s; cancelled")
        await redis.aclose()

    app[DRAIN] = Drain(settings.infra.shutdown_drain_s)
    app.cleanup_ctx.append(resources)
    app.router.add_post("/v1/queue/tokens", enter)
    app.router.add_get("/v1/queue/tokens/{token}", status)
    app.router.add_get("/v1/queue/tokens/{token}/events", status_events)
    app.router.add_post("/v1/queue/tokens/{token}/validate", validate)
    app.router.add_delete("/v1/queue/tokens/{token}", complete)
    app.router.add_get("/v1/queue/{concert_id}", concert_stats)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", http_metrics.handler)
    add_page(app)
    publish_openapi(app, Path(__file__).with_name("openapi.json"))
    return app
