"""The one place Faust apps are configured: broker, idempotent producer, timeouts, web, topics.

Every Faust service builds its app with `create_faust_app`, so broker addresses, processing
guarantee and the (short, in dev/test) group timeouts are the same everywhere.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

import faust
import uvloop
from mode import Service

from shared import compat
from shared.compat import read_offset, recovery_state
from shared.events import Message, UnknownMessage, decode
from shared.logs import dict_config, follow_record
from shared.recovery_watch import RecoveryWatch
from shared.redis_client import UNAVAILABLE_ERRORS, create_redis
from shared.settings import (
    InfraSettings,
    SettingsError,
    WorkerSettings,
    describe,
    require_canonical_url,
)
from shared.stream_metrics import StreamMetrics
from shared.topics import changelog_configs, ensure_topics
from shared.worker_lease import RENEW_EVERY_S, WorkerIdTaken, claim, renew

log = logging.getLogger(__name__)


def broker_urls(infra: InfraSettings) -> list[str]:
    scheme = compat.IDEMPOTENT if infra.kafka_idempotent else compat.BATCHING
    brokers = infra.kafka_address
    return [f"{scheme}://{b.strip()}" for b in brokers.split(",") if b.strip()]


def create_faust_app(app_id: str, settings: WorkerSettings) -> faust.App:
    """A worker's Faust app (`app_id` is its consumer group), configured from its settings."""
    infra, datadir, web_host = settings.infra, settings.datadir, settings.host
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        app_id,
        broker=broker_urls(infra),
        store="memory://",  # tables recover from their compacted changelogs on start
        datadir=str(datadir),
        topic_partitions=infra.kafka_partitions,
        topic_replication_factor=infra.kafka_replication,
        processing_guarantee=infra.kafka_processing_guarantee,
        producer_acks=-1,
        producer_linger_ms=infra.kafka_linger_ms,
        broker_session_timeout=infra.kafka_session_timeout_s,
        broker_heartbeat_interval=infra.kafka_heartbeat_s,
        broker_rebalance_timeout=infra.kafka_rebalance_timeout_s,
        broker_commit_interval=0.5,
        consumer_auto_offset_reset="earliest",
        # Static membership (KIP-345) only where chosen: see `InfraSettings.static_membership`.
        consumer_group_instance_id=(
            f"{app_id}-{infra.faust_worker_id}" if infra.static_membership else None
        ),
        stream_recovery_delay=0.0,
        table_standby_replicas=0,
        web_host=web_host,
        web_bind=web_host,
        # Faust's default, http://<bind host>:<port>, is useless when binding 0.0.0.0.
        canonical_url=infra.node_canonical_url or None,
        web_port=settings.port,
        web_in_thread=False,
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
    )


def acked_table(app: faust.App, name: str, infra: InfraSettings) -> Any:
    """An `AckedTable` (shared/compat.py) of bytes (the caller encodes its values)."""
    table = compat.AckedTable(
        app,
        name=name,
        default=None,
        value_type=bytes,
        beacon=app.tables.beacon,
        partitions=app.conf.topic_partitions,
        extra_topic_configs=changelog_configs(infra.kafka_min_insync_replicas),
    )
    return app.tables.add(table)


def raw_topic(app: faust.App, *names: str) -> Any:
    """A topic (or several co-partitioned ones) of raw bytes; the event catalog decodes."""
    return app.topic(
        *names,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=app.conf.topic_partitions,
    )


async def decoded(stream: Any, metrics: StreamMetrics) -> AsyncIterator[Message]:
    """The catalog messages of a Faust stream, counted per topic (see `decoded_events`)."""
    async for _, message in decoded_events(stream, metrics):
        yield message


async def decoded_events(stream: Any, metrics: StreamMetrics) -> AsyncIterator[tuple[Any, Message]]:
    """(Faust event, catalog message) of a stream, counted per topic. A message the catalog
    cannot read is counted, logged with its position, acked and skipped (it would never decode
    on retry). On a `stream.noack()` stream the caller acks every event it is given. While the
    caller handles an event, its `request-id` header is the current request id (shared/logs.py).
    """
    async for event in stream.events():
        follow_record(event.message.headers)
        message = decode_event(event, metrics)
        if message is None:
            event.ack()
            continue
        yield event, message


def decoded_batch(events: list[Any], metrics: StreamMetrics) -> list[tuple[Any, Message]]:
    """(event, catalog message) of a batch of Faust events (`stream.take_events`, which acks
    the batch itself), counted per topic; one the catalog cannot read is skipped."""
    decoded = ((e, decode_event(e, metrics)) for e in events)
    return [(e, m) for e, m in decoded if m is not None]


def decode_event(event: Any, metrics: StreamMetrics) -> Message | None:
    """The event's catalog message, counted; None (counted and logged with its position) when
    the catalog cannot read it."""
    topic = event.message.topic
    metrics.consumed.labels(topic).inc()
    try:
        return decode(event.value)
    except UnknownMessage as exc:
        metrics.undecodable.labels(topic).inc()
        log.error(
            "skipping message at %s[%s]@%s: %s",
            topic,
            event.message.partition,
            event.message.offset,
            exc,
        )
        return None


class HasInfra(Protocol):
    @property
    def infra(self) -> InfraSettings: ...

    @property
    def host(self) -> str: ...


S = TypeVar("S", bound=HasInfra)


def faust_main(
    name: str, read_settings: Callable[[], S], create_app: Callable[[S], faust.App]
) -> int:
    """`python -m services.<name>` of every Faust worker: uvloop, settings (a bad one exits 2
    naming the variable), the app, then `run_worker`."""
    # uvloop before anything asks for an event loop: the app and its services bind to it.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        settings = read_settings()
        require_canonical_url(settings.infra, settings.host)
    except SettingsError as exc:
        print(f"{name}: bad setting: {exc}", file=sys.stderr)
        return 2
    compat.install(settings.infra)
    print(f"{name}: starting with {describe(settings)}", file=sys.stderr, flush=True)
    try:
        asyncio.run(claim_worker_id(name, settings.infra))
    except WorkerIdTaken as exc:
        print(f"{name}: {exc}", file=sys.stderr, flush=True)
        return 2
    except UNAVAILABLE_ERRORS:  # a Redis blip must not stop a worker: the lease is taken later
        print(f"{name}: Redis unreachable: FAUST_WORKER_ID lease taken once it is back", flush=True)
    app = create_app(settings)
    keep_worker_id(app, name, settings.infra)
    watchdog = RecoveryWatchdog(app, RecoveryWatch(settings.infra.recovery_stall_s))
    return run_worker(app, settings.infra, watchdog)


async def claim_worker_id(name: str, infra: InfraSettings) -> None:
    """This worker's FAUST_WORKER_ID lease (shared/worker_lease.py), before it joins its group."""
    client = create_redis(infra.redis_address, socket_timeout=2.0, max_connections=1)
    try:
        await claim(client, name, infra.faust_worker_id)
    finally:
        await client.aclose()


class Closeable(Protocol):
    async def aclose(self) -> None: ...


def owns(service: Service, client: Closeable) -> None:
    """`service` closes `client` as the last step of its stop, after its children (for an app:
    agents, timers, web server) have stopped, so nothing still running finds it closed. Mode
    closes a service's exit stack after its children; a callback pushed before start is kept."""
    service.async_exit_stack.push_async_callback(client.aclose)


def keep_worker_id(app: faust.App, name: str, infra: InfraSettings) -> None:
    """Renew the lease while the worker runs; exit loudly if another worker took the id."""
    client = create_redis(infra.redis_address, socket_timeout=2.0, max_connections=2)
    owns(app, client)

    @app.timer(interval=RENEW_EVERY_S, on_leader=False)  # type: ignore[untyped-decorator]
    async def renew_worker_id() -> None:
        try:
            await renew(client, name, infra.faust_worker_id)
        except WorkerIdTaken as exc:
            log.critical("%s: %s: stopping", name, exc)
            os._exit(3)  # two workers with one id must not both run, not even for a moment
        except UNAVAILABLE_ERRORS:
            pass  # Redis away: the lease is renewed (or taken again) once it is back


class RecoveryWatchdog(Service):
    """Exits the process when table recovery stalls (shared/recovery_watch.py), so a restart
    recovers. A service of the Worker, not an app timer: Faust starts app timers only once the
    first recovery is complete, so a timer would miss a worker stalled at its start."""

    def __init__(self, app: faust.App, watch: RecoveryWatch) -> None:
        super().__init__()
        self.app, self.watch = app, watch

    @Service.task
    async def _watch(self) -> None:
        interval = min(5.0, self.watch.stall_s / 3)
        while not self.should_stop:
            await self.sleep(interval)
            in_recovery, remaining = recovery_state(self.app)
            if self.watch.stalled(time.monotonic(), in_recovery, remaining):
                log.critical(
                    "table recovery stalled: %d changelog records still to read and none read "
                    "for %.0f s; exiting so that a restart recovers from the start",
                    remaining,
                    self.watch.stall_s,
                )
                os._exit(70)  # alive but never ready: only a restart gets this worker going


def run_worker(app: faust.App, infra: InfraSettings, *services: Service) -> int:
    """Declare the catalog's topics, then run a Faust worker, with `services` beside the app,
    until SIGTERM/SIGINT (drains)."""
    brokers = infra.kafka_address
    asyncio.run(
        ensure_topics(
            brokers,
            infra.kafka_partitions,
            infra.kafka_replication,
            infra.kafka_min_insync_replicas,
        )
    )
    worker = faust.Worker(
        app, *services, loglevel="INFO", quiet=True, logging_config=dict_config(infra.log_format)
    )
    worker.execute_from_commandline()  # exits the process itself
    return 0


class RebalanceSensor(faust.Sensor):
    """Counts this worker's rebalances and times each, from its start until the partitions are
    served again (Faust's `on_rebalance_end`: table recovery included)."""

    def __init__(self, metrics: StreamMetrics) -> None:
        super().__init__()
        self.metrics = metrics

    def on_rebalance_end(self, app: Any, state: dict[str, Any]) -> None:
        self.metrics.rebalances.inc()
        self.metrics.rebalance_seconds.observe(time.monotonic() - state["time_start"])


def track_group(app: faust.App, metrics: StreamMetrics, interval_s: float = 2.0) -> None:
    """Export this worker's consumer-group figures: per-partition lag (high-water mark minus
    the next offset to read) as a gauge, and its rebalances (RebalanceSensor)."""
    app.sensors.add(RebalanceSensor(metrics))

    @app.timer(interval=interval_s, on_leader=False)  # type: ignore[untyped-decorator]
    async def report_lag() -> None:
        consumer = app.consumer
        for tp in consumer.assignment():
            if tp.topic.endswith("-changelog") or "__assignor" in tp.topic:
                continue
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # not fetched yet
                continue
            read = read_offset(consumer, tp)
            position = read + 1 if read is not None else 0
            lag = max(0, (highwater or 0) - position)
            metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)
