"""The seat projection worker: the seat map read model; run `python -m services.seat_projection`.

One agent folds seat facts (keyed by concert, so a concert's facts share a partition) into two
tables written only by it: ``seat_to_status`` (``concert|seat`` -> [status, version]) and
``concert_to_counts`` (concert -> seats, held, sold). Seats never touched are available.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
from aiohttp import web
from prometheus_client import CollectorRegistry

from services.seat_projection.core import (
    AVAILABLE,
    HELD,
    SOLD,
    Counts,
    SeatView,
    StatusIndex,
    fold,
)
from services.seat_projection.settings import ProjectionSettings
from shared.compat import writing_for
from shared.errors import InvalidRequest, NotFound
from shared.faust_app import create_faust_app, decoded_batch, raw_topic, track_group
from shared.faust_web import AiohttpServer, service_app
from shared.http import json_response, query_int
from shared.ids import ID_RULE, is_valid_id
from shared.stream_metrics import StreamMetrics
from shared.topics import changelog_configs, consumed_by

OPENAPI = Path(__file__).with_name("openapi.json")  # served at /openapi.json
MAX_LIMIT = 1000
# Seats looked at per page of available seats, at most: held and sold pages read the index
# (core.StatusIndex); an available page of a nearly sold-out concert may come back short, with
# next_after to go on from, so one call never walks a whole 100,000-seat concert.
MAX_SCAN = 5000
BATCH, BATCH_WITHIN_S = 500, 0.005
STATUSES = (AVAILABLE, HELD, SOLD)


def _counts(doc: dict[str, int] | None) -> Counts:
    return Counts(**doc) if doc else Counts()


def create_app(settings: ProjectionSettings) -> faust.App:
    infra = settings.infra
    app = create_faust_app("seat_projection", settings)
    registry = CollectorRegistry()
    metrics = StreamMetrics(registry)
    partitions = infra.kafka_partitions
    changelog = changelog_configs(infra.kafka_min_insync_replicas)
    seat_to_status = app.Table(
        "seat_to_status", default=None, partitions=partitions, extra_topic_configs=changelog
    )
    concert_to_counts = app.Table(
        "concert_to_counts", default=None, partitions=partitions, extra_topic_configs=changelog
    )

    index = StatusIndex()  # held and sold seats per concert, for paging (core.StatusIndex)

    @seat_to_status.on_recover
    async def rebuild_index() -> None:
        rebuilt = StatusIndex.of((k, SeatView(*doc)) for k, doc in seat_to_status.items() if doc)
        index.by_concert = rebuilt.by_concert

    def seat_of(key: str) -> SeatView:
        doc = seat_to_status.get(key)
        return SeatView(*doc) if doc else SeatView()

    @app.agent(raw_topic(app, *consumed_by("seat_projection")), name="seat_map", concurrency=1)
    async def seat_map(stream: Any) -> None:
        # Batches: a seat or a concert's counts touched by several facts is written once.
        async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
            with metrics.handler_latency.labels("seat_map").time():
                facts = decoded_batch(events, metrics)
                changes = fold(
                    (m for _, m in facts),
                    seat_of,
                    lambda concert_id: _counts(concert_to_counts.get(concert_id)),
                )
                # Facts are keyed by concert: a concert's writes go to its facts' partition.
                event_of = {getattr(m, "concert_id", ""): e for e, m in facts}
                for key, seat in changes.seats.items():
                    concert_id, _, seat_id = key.partition("|")
                    with writing_for(event_of[concert_id]):
                        seat_to_status[key] = [seat.status, seat.version]
                    if seat_id.isascii() and seat_id.isdigit():
                        index.set(concert_id, int(seat_id), seat.status)
                    metrics.decisions.labels(seat.status).inc()
                for concert_id, c in changes.counts.items():
                    with writing_for(event_of[concert_id]):
                        concert_to_counts[concert_id] = {
                            "seats": c.seats,
                            "held": c.held,
                            "sold": c.sold,
                        }
                if changes.ignored:
                    metrics.decisions.labels("stale_or_duplicate").inc(changes.ignored)

    async def seats(request: web.Request) -> web.Response:
        concert_id = request.match_info["concert_id"]
        if not is_valid_id(concert_id):
            raise InvalidRequest(f"concert_id must be {ID_RULE}", field="concert_id")
        status = request.query.get("status")
        if status is not None and status not in STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}", field="status")
        limit = query_int(request, "limit", default=100, low=1, high=MAX_LIMIT)
        counts = _counts(concert_to_counts.get(concert_id))
        after = query_int(request, "after", default=0, low=0, high=max(counts.seats, 1))
        if counts.seats == 0:
            raise NotFound(f"no seat map for concert {concert_id!r} (yet)")
        numbered, next_after = index.page(concert_id, counts.seats, status, after, limit, MAX_SCAN)
        return json_response(
            {
                "concert_id": concert_id,
                "counts": {
                    "available": counts.available,
                    "held": counts.held,
                    "sold": counts.sold,
                },
                "seats": [{"seat_id": str(n), "status": st} for n, st in numbered],
                "next_after": None if next_after is None else str(next_after),
            }
        )

    # Served only after table recovery: ready then.
    web_app = service_app(
        registry,
        drain_s=infra.shutdown_drain_s,
        openapi=OPENAPI,
        cors=infra.cors_allowed_origins,  # the fans' page reads the seat map
    )
    web_app.router.add_get("/v1/concerts/{concert_id}/seats", seats)
    track_group(app, metrics)
    app.web_server(AiohttpServer(web_app, settings.host, settings.port))
    return app
