"""The reservation worker: the seat agent (single writer of seat state), the hold sweeper, and
the HTTP API; run with `python -m services.reservation`.

The seat agent consumes every seat-keyed topic (requests, payment results, hold expiries),
co-partitioned by seat, so each seat's messages reach one agent in order.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from services.reservation.catalog import Catalog
from services.reservation.context import Reservations
from services.reservation.ids import ReservationIds
from services.reservation.settings import ReservationSettings
from services.reservation.store import ReservationStore
from services.reservation.web import create_web_app
from shared.faust_app import (
    acked_table,
    create_faust_app,
    decoded_events,
    raw_topic,
    track_consumer_lag,
)
from shared.faust_web import AiohttpServer
from shared.redis_client import UNAVAILABLE_ERRORS, create_redis
from shared.stream_metrics import StreamMetrics
from shared.tokens import TokenCodec
from shared.topics import BY_NAME, SEAT, names
from shared.waiting_room import WaitingRoom

log = logging.getLogger(__name__)
FULL_RESCAN_S = 30.0


def create_app(settings: ReservationSettings) -> faust.App:
    infra = settings.infra
    app = create_faust_app(
        "reservation",
        infra,
        web_host=settings.host,
        web_port=settings.port,
        datadir=settings.datadir,
    )
    registry = CollectorRegistry()
    redis = create_redis(
        infra.redis_url or "redis://127.0.0.1:6379/0",
        socket_timeout=infra.redis_socket_timeout_s,
        max_connections=infra.redis_max_connections,
    )
    codec = TokenCodec(settings.token_secret)
    topics = {spec.name: raw_topic(app, spec.name) for spec in BY_NAME.values()}
    ctx = Reservations(
        settings=settings,
        app=app,
        store=ReservationStore(redis),
        catalog=Catalog(infra.kafka_brokers or "127.0.0.1:9092"),
        room=WaitingRoom(
            redis,
            codec,
            active_ttl_s=settings.queue_active_ttl_s,
            heartbeat_s=settings.queue_heartbeat_s,
        ),
        ids=ReservationIds(settings.token_secret),
        metrics=StreamMetrics(registry),
        registry=registry,
        topics=topics,
        seat_to_state=acked_table(app, "seat_to_state", settings.infra),
    )
    seat_commands = raw_topic(app, *names(SEAT))

    @app.agent(seat_commands, name="seat_agent", concurrency=1)
    async def seat_agent(stream: Any) -> None:
        # noack: an event is acked (its offset may be committed) only once the outputs of its
        # decision are handed to the producer, after the decision itself is durable.
        async for event, m in decoded_events(stream.noack(), ctx.metrics):
            with ctx.metrics.handler_latency.labels("seat_agent").time():
                await ctx.handle(m, done=event.ack)

    rescan_at = [0.0]

    @app.timer(interval=settings.hold_sweep_s, on_leader=False)  # type: ignore[untyped-decorator]
    async def sweep_holds() -> None:
        if time.monotonic() >= rescan_at[0]:
            ctx.rescan_holds()
            rescan_at[0] = time.monotonic() + FULL_RESCAN_S
        try:
            sent = await ctx.expire_due_holds()
        except UNAVAILABLE_ERRORS:
            return
        if sent:
            ctx.metrics.decisions.labels("ExpireHold:sent").inc(sent)

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def on_rebalance(sender: Any, **kwargs: Any) -> None:
        rescan_at[0] = 0.0  # partitions moved: rebuild the deadline heap on the next sweep

    track_consumer_lag(app, ctx.metrics)
    app.web_server(AiohttpServer(create_web_app(ctx, redis), settings.host, settings.port))
    return app
