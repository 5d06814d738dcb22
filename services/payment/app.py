"""The payment worker: charges and refunds through the gateway; run `python -m services.payment`.

The agent holds no table (the gateway de-duplicates by reservation id), so it runs with many
concurrent actors: gateway latency overlaps instead of queueing. Faust commits an offset only
once every earlier message of the partition is done, so nothing is skipped on a crash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import faust
from prometheus_client import CollectorRegistry, Counter

from services.payment.core import UNREACHABLE, Publish, Request, decide
from services.payment.gateway import Outcome, PaymentGateway, SimulatedGateway
from services.payment.settings import PaymentSettings
from shared.events import PaymentRequested, RefundPayment, SeatMessage
from shared.faust_app import create_faust_app, decoded, owns, raw_topic, track_group
from shared.faust_web import AiohttpServer, service_app
from shared.logs import kafka_headers
from shared.redis_client import UNAVAILABLE_ERRORS, service_redis
from shared.stream_metrics import StreamMetrics
from shared.topics import BY_NAME, PAYMENT, TOPIC_OF, key_of, names

OPENAPI = Path(__file__).with_name("openapi.json")  # served at /openapi.json

log = logging.getLogger(__name__)


async def settle(gw: PaymentGateway, m: Request) -> SeatMessage:
    """Ask the gateway until the core says what to publish (services/payment/core.py)."""
    ask = gw.refund if isinstance(m, RefundPayment) else gw.charge
    tries = 0
    while True:
        outcome: Outcome | None
        try:
            outcome = await ask(m.reservation_id, m.amount)
        except UNAVAILABLE_ERRORS:
            outcome = UNREACHABLE
        step = decide(m, outcome, tries, time.time_ns() // 1_000_000)
        if isinstance(step, Publish):
            return step.fact
        log.log(
            logging.ERROR if step.alert else logging.WARNING,
            "%s of %s: %s (try %d); retrying in %.1f s%s",
            "refund" if isinstance(m, RefundPayment) else "charge",
            m.reservation_id,
            step.why,
            tries + 1,
            step.after_s,
            ": still failing, look at the gateway" if step.alert else "",
        )
        await asyncio.sleep(step.after_s)
        tries += 1


def create_app(settings: PaymentSettings, gateway: PaymentGateway | None = None) -> faust.App:
    infra = settings.infra
    app = create_faust_app("payment", settings)
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    refunds = Counter("payment_refunds_total", "Refunds made", registry=registry)
    redis = service_redis(infra)
    owns(app, redis)  # closed after the agents and the web server have stopped
    gw = gateway or SimulatedGateway(
        redis, latency_ms=settings.latency_ms, failure_rate=settings.failure_rate
    )
    out = {name: raw_topic(app, name) for name in BY_NAME}

    @app.agent(
        raw_topic(app, *names(PAYMENT)), name="payment_agent", concurrency=settings.concurrency
    )
    async def payment_agent(stream: Any) -> None:
        async for m in decoded(stream, metrics):
            if not isinstance(m, PaymentRequested | RefundPayment):
                continue
            with metrics.handler_latency.labels("payment_agent").time():
                result = await settle(gw, m)
                if isinstance(m, RefundPayment):
                    refunds.inc()
                name = TOPIC_OF[type(result).__name__]
                await out[name].send(
                    key=key_of(name, result), value=result.to_bytes(), headers=kafka_headers()
                )
                metrics.produced.labels(name).inc()
                metrics.decisions.labels(type(result).__name__).inc()

    web_app = service_app(
        registry, drain_s=infra.shutdown_drain_s, openapi=OPENAPI, ready=redis.ping
    )
    track_group(app, metrics)
    app.web_server(AiohttpServer(web_app, settings.host, settings.port))
    return app
