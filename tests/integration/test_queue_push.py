"""A fan's place pushed over Server-Sent Events, on real Redis (services/queue/push.py): one
read per concert per process feeds every open stream, and an open stream keeps its fan in line."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from typing import Any

from prometheus_client import CollectorRegistry

from services.queue.store import QueueStore
from shared.redis_client import create_redis
from tests.support.queue import Client, enter, on_sale, queue_instance
from tests.support.sse import next_event

PAUSED = {"QUEUE_ADMIT_PER_S": "0", "QUEUE_PUSH_INTERVAL_MS": "100"}


async def ops(client: Client, op: str) -> float:
    text = await (await client.get("/metrics")).text()
    found = re.search(rf'^redis_call_duration_seconds_count{{op="{op}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_a_waiting_fan_is_pushed_each_move_and_the_stream_ends_at_admission(
    redis_url: str,
) -> None:
    concert = await on_sale(redis_url)
    async with queue_instance(redis_url, QUEUE_ADMIT_PER_S="4", QUEUE_PUSH_INTERVAL_MS="100") as q:
        tokens = [(await enter(q, concert, f"fan-{i}"))["token"] for i in range(6)]
        response = await q.get(f"/v1/queue/tokens/{tokens[-1]}/events")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        seen: list[dict[str, Any]] = []
        while True:
            name, data = await next_event(response)
            if name == "eof":
                break
            assert name == "status", (name, data)
            seen.append(data)
        waiting = [v["position"] for v in seen if v["status"] == "waiting"]
        assert seen[-1]["status"] == "active", seen
        assert len(waiting) >= 2 and waiting == sorted(waiting, reverse=True), waiting
        news = [(v["position"], v["eta_seconds"], v["sale"]) for v in seen]
        assert all(a != b for a, b in itertools.pairwise(news)), news  # only changes


async def test_one_read_per_concert_serves_every_open_stream(redis_url: str) -> None:
    concert = await on_sale(redis_url)
    async with queue_instance(redis_url, **PAUSED) as q:
        tokens = [(await enter(q, concert, f"fan-{i}"))["token"] for i in range(40)]
        streams = [await q.get(f"/v1/queue/tokens/{t}/events") for t in tokens]
        for s in streams:
            assert (await next_event(s))[0] == "status"
        watch_0, touch_0 = await ops(q, "watch"), await ops(q, "touch")
        assert touch_0 >= 40  # each stream's first answer: one TOUCH (counted, op="touch")
        await asyncio.sleep(2.0)
        watches = await ops(q, "watch") - watch_0
        assert 5 <= watches <= 30, watches  # ~20 reads at 100 ms, whatever the 40 fans
        assert await ops(q, "touch") - touch_0 == 0  # no fan costs a call of their own
        for s in streams:
            s.close()


async def test_an_open_stream_keeps_a_fan_who_never_polls_in_line(redis_url: str) -> None:
    concert = await on_sale(redis_url)
    async with queue_instance(redis_url, **PAUSED, QUEUE_WAIT_HEARTBEAT_S="1.5") as q:
        streamed = (await enter(q, concert, "streaming"))["token"]
        silent = (await enter(q, concert, "silent"))["token"]
        stream = await q.get(f"/v1/queue/tokens/{streamed}/events")
        assert (await next_event(stream))[0] == "status"
        await asyncio.sleep(3.5)  # more than twice the heartbeat, with no poll from either
        kept = await q.get(f"/v1/queue/tokens/{streamed}")
        assert kept.status == 200 and (await kept.json())["status"] == "waiting"
        dropped = await q.get(f"/v1/queue/tokens/{silent}")
        assert dropped.status == 410 and (await dropped.json())["error"]["reason"] == "dropped"
        stream.close()


async def test_a_token_that_ended_while_streaming_gets_a_gone_event(redis_url: str) -> None:
    concert = await on_sale(redis_url)
    async with queue_instance(redis_url, QUEUE_ADMIT_PER_S="0", QUEUE_PUSH_INTERVAL_MS="100") as q:
        token = (await enter(q, concert, "leaver"))["token"]
        stream = await q.get(f"/v1/queue/tokens/{token}/events")
        assert (await next_event(stream))[0] == "status"
        assert (await q.delete(f"/v1/queue/tokens/{token}")).status == 204  # they left the line
        # Leaving moves the front past their ticket: the stream asks what became of them.
        name, data = await next_event(stream)
        assert name == "gone", (name, data)
        assert data["error"]["code"] == "token_expired"
        assert await next_event(stream) == ("eof", None)


async def test_a_sell_out_reaches_every_open_stream_at_once_and_ends_it(redis_url: str) -> None:
    concert = await on_sale(redis_url, seats=1)
    # A long heartbeat: fans far back are due a routine update only every 10 s.
    async with queue_instance(redis_url, **PAUSED, QUEUE_WAIT_HEARTBEAT_S="30") as q:
        tokens = [(await enter(q, concert, f"fan-{i}"))["token"] for i in range(20)]
        streams = [await q.get(f"/v1/queue/tokens/{t}/events") for t in tokens]
        for stream in streams:
            assert (await next_event(stream))[0] == "status"
        redis = create_redis(redis_url, socket_timeout=2, max_connections=2)
        try:  # the seat fact the queue's consumer applies when the last seat is confirmed
            store = QueueStore(redis, CollectorRegistry())
            assert await store.seats([(concert, "1", "s", 1)], 600) == ["sold_out"]
        finally:
            await redis.aclose()
        sold = time.monotonic()
        for stream in streams:
            name, data = await next_event(stream)
            assert (name, data["status"]) == ("status", "sold_out"), data
            assert data["message"].startswith("Sold out")
            assert await next_event(stream) == ("eof", None)
        assert time.monotonic() - sold < 3.0  # at once, not at the 10 s routine pace


async def test_a_bad_token_is_a_plain_json_error_not_a_stream(redis_url: str) -> None:
    async with queue_instance(redis_url, **PAUSED) as q:
        response = await q.get("/v1/queue/tokens/not-a-token/events")
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "invalid_token"
