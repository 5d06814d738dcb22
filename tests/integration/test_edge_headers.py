"""What every answer carries at the edge. The request id: returned on the answer, quoted in an
error, and carried as the Kafka header `request-id` on the command it publishes and on every
record derived from it, so one request can be followed across the services. And CORS for the
browser origins the settings allow."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from tests.support.pipeline import Pipeline, pipeline
from tests.support.queue import fan

PAGE = "https://tickets.example"


@pytest_asyncio.fixture(loop_scope="session")
async def stack(tmp_path: Path, redis_url: str, kafka_brokers: str) -> AsyncIterator[Pipeline]:
    async with pipeline(tmp_path, redis_url, kafka_brokers, CORS_ALLOWED_ORIGINS=PAGE) as p:
        yield p


async def headers_of(brokers: str, topic: str, reservation_id: str) -> dict[str, bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=brokers, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for r in records:
                    if orjson.loads(r.value).get("reservation_id") == reservation_id:
                        return {k: v for k, v in r.headers}
        raise AssertionError(f"no {topic} record for {reservation_id}")
    finally:
        await consumer.stop()


async def test_a_callers_id_is_returned_and_rides_on_every_record_of_the_purchase(
    stack: Pipeline, kafka_brokers: str
) -> None:
    concert = await stack.create_concert(seats=2)
    token = await stack.active_token(concert, "fan-1")
    rid = f"trace-{uuid.uuid4().hex}"
    async with stack.http.post(
        stack.url("reservation", "/v1/reservations"),
        json={"concert_id": concert, "seat_id": "1", "user_id": "fan-1"},
        headers={"Queue-Token": token, "X-Request-Id": rid},
    ) as r:
        assert r.status == 202
        assert r.headers["X-Request-Id"] == rid
        reservation_id = (await r.json())["reservation_id"]
    headers = await headers_of(kafka_brokers, "reservation.requested", reservation_id)
    assert headers.get("request-id") == rid.encode()
    # What the seat agent derives from the command carries the same id.
    headers = await headers_of(kafka_brokers, "seat.held", reservation_id)
    assert headers.get("request-id") == rid.encode()
    # The payment request's id rides on its command, the gateway's result and the outcome.
    paid = f"trace-{uuid.uuid4().hex}"
    status, _ = await stack.call(
        "POST",
        "reservation",
        f"/v1/reservations/{reservation_id}/payment",
        json={"user_id": "fan-1"},
        headers={"Queue-Token": token, "X-Request-Id": paid},
    )
    assert status == 202
    for topic in ("payment.requested", "payment.completed", "seat.confirmed"):
        headers = await headers_of(kafka_brokers, topic, reservation_id)
        assert headers.get("request-id") == paid.encode(), topic


async def test_every_answer_gets_an_id_and_an_error_quotes_it(stack: Pipeline) -> None:
    async with stack.http.post(
        stack.url("queue", "/v1/queue/tokens"),
        data=b"{not json",
        headers={**fan("fan-2"), "X-Request-Id": "not <a> well-formed id"},
    ) as r:
        assert r.status == 400
        generated = r.headers["X-Request-Id"]
        assert len(generated) == 32  # the malformed one was replaced
        assert (await r.json())["error"]["request_id"] == generated
    for service in ("queue", "reservation", "payment", "seat_projection"):
        async with stack.http.get(stack.url(service, "/healthz")) as r:
            assert len(r.headers["X-Request-Id"]) == 32


async def test_a_browser_on_the_allowed_origin_may_call_the_public_apis(stack: Pipeline) -> None:
    for service, path in (
        ("queue", "/v1/queue/tokens"),
        ("reservation", "/v1/reservations"),
        ("seat_projection", "/v1/concerts/c/seats"),
    ):
        preflight = {
            "Origin": PAGE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }
        async with stack.http.options(stack.url(service, path), headers=preflight) as r:
            assert r.status == 204, service
            assert r.headers["Access-Control-Allow-Origin"] == PAGE
            assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
        async with stack.http.get(stack.url(service, "/healthz"), headers={"Origin": PAGE}) as r:
            assert r.headers["Access-Control-Allow-Origin"] == PAGE
            assert "Retry-After" in r.headers["Access-Control-Expose-Headers"]


async def test_another_origin_gets_no_cors_permission(stack: Pipeline) -> None:
    evil = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    async with stack.http.options(stack.url("queue", "/v1/queue/tokens"), headers=evil) as r:
        assert r.status == 405  # no preflight answer: the browser refuses the call
        assert "Access-Control-Allow-Origin" not in r.headers
    async with stack.http.get(stack.url("queue", "/healthz"), headers=evil) as r:
        assert "Access-Control-Allow-Origin" not in r.headers
