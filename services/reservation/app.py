"""The reservation worker: the seat agent (single writer of seat state), the hold sweeper, and
the HTTP API; run with `python -m services.reservation`.

The seat agent consumes every seat-keyed topic (requests, payment results, hold expiries),
co-partitioned by seat, so each seat's messages reach one agent in order.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from services.reservation.catalog import Catalog
from services.reservation.context import Reservations, SeatRecords, now_ms
from services.reservation.ids import ReservationIds
from services.reservation.settings import ReservationSettings
from services.reservation.store import ReservationStore
from services.reservation.stream import reservation_events
from services.reservation.web import create_web_app
from shared.compat import committed_offsets
from shared.faust_app import (
    acked_table,
    create_faust_app,
    decoded_events,
    owns,
    raw_topic,
    track_group,
)
from shared.faust_web import AiohttpServer
from shared.pipeline_health import REFUSALS_WINDOW, REPORT_EVERY_S, HealthReporter
from shared.redis_client import UNAVAILABLE_ERRORS, service_redis
from shared.stream_metrics import StreamMetrics
from shared.tokens import TokenCodec
from shared.topics import BY_NAME, SEAT, names
from shared.waiting_room import WaitingRoom

log = logging.getLogger(__name__)


def create_app(settings: ReservationSettings) -> faust.App:
    infra = settings.infra
    app = create_faust_app("reservation", settings)
    registry = CollectorRegistry()
    redis = service_redis(infra)
    owns(app, redis)  # closed after the agents and the web server have stopped
    codec = TokenCodec(settings.token_secret)
    topics = {spec.name: raw_topic(app, spec.name) for spec in BY_NAME.values()}
    table = acked_table(app, "seat_records", settings.infra)
    ctx = Reservations(
        settings=settings,
        app=app,
        store=ReservationStore(redis),
        catalog=Catalog(infra.kafka_address),
        room=WaitingRoom(
            redis,
            codec,
            active_ttl_s=settings.tokens.active_ttl_s,
            heartbeat_s=settings.tokens.wait_heartbeat_s,
        ),
        ids=ReservationIds(settings.token_secret),
        metrics=StreamMetrics(registry),
        registry=registry,
        topics=topics,
        seats=SeatRecords(table),
        committed=lambda: committed_offsets(app.consumer),
    )
    seat_commands = raw_topic(app, *names(SEAT))

    @app.agent(seat_commands, name="seat_agent", concurrency=1)
    async def seat_agent(stream: Any) -> None:
        # noack: an event is acked (its offset may be committed) only once the outputs of its
        # decision are handed to the producer, after the decision itself is durable.
        ctx.outbox.start()
        try:
            async for event, m in decoded_events(stream.noack(), ctx.metrics):
                with ctx.metrics.handler_latency.labels("seat_agent").time():
                    msg = event.message
                    ctx.pressure.observe(msg.timestamp)
                    await ctx.handle(
                        m, done=event.ack, source=f"{msg.topic}:{msg.partition}", offset=msg.offset
                    )
        finally:
            await ctx.outbox.stop()

    @app.timer(interval=settings.hold_sweep_s, on_leader=False)  # type: ignore[untyped-decorator]
    async def sweep_holds() -> None:
        try:
            sent = await ctx.sweeper.sweep(ctx.seats, ctx.publish, now_ms())
        except UNAVAILABLE_ERRORS:
            return
        if sent:
            ctx.metrics.decisions.labels("ExpireHold:sent").inc(sent)

    reporter = HealthReporter(redis, f"reservation:{infra.faust_worker_id}")
    refusals: deque[int] = deque(maxlen=REFUSALS_WINDOW)

    @app.timer(interval=REPORT_EVERY_S, on_leader=False)  # type: ignore[untyped-decorator]
    async def report_health() -> None:
        """Tell the waiting room how far behind the seat agent is and how many requests it
        refused over the last few reports (so a reader once a second cannot miss them)."""
        refusals.append(ctx.pressure.take_refused())
        # Redis away: the queue reads silence and slows admission, as it should.
        with contextlib.suppress(*UNAVAILABLE_ERRORS):
            await reporter.report(ctx.pressure.delay_ms, sum(refusals))

    @table.on_recover  # type: ignore[untyped-decorator]
    async def on_recovered() -> None:
        ctx.sweeper.stale = True  # the table changed under the heap: rebuild it on the next sweep

    track_group(app, ctx.metrics)
    web_app = create_web_app(ctx, redis)
    web_app.router.add_get("/v1/reservations/{reservation_id}/events", reservation_events)
    app.web_server(AiohttpServer(web_app, settings.host, settings.port))
    return app
