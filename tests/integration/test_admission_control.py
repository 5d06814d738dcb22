"""Admission that follows the pipeline, on real Redis: the queue's controller reads the health
the pipeline's workers report (shared/pipeline_health.py, the reservation worker's reporter)
and moves each concert's admit rate between QUEUE_ADMIT_FLOOR_PER_S and QUEUE_ADMIT_PER_S."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from shared.pipeline_health import HEALTH_KEY, HealthReporter
from shared.redis_client import create_redis
from tests.support.queue import Client, enter, eventually, on_sale, queue_instance

CONTROLLED = {
    "QUEUE_ADMIT_CONTROL": "pipeline",
    "QUEUE_ADMIT_PER_S": "200",  # the ceiling; a step of 10/s each second, start at 50/s
    "QUEUE_ADMIT_FLOOR_PER_S": "5",
    "QUEUE_CONTROL_DELAY_MS": "500",
}


async def target(client: Client, concert: str) -> tuple[float, str]:
    response = await client.get(f"/v1/queue/{concert}")
    assert response.status == 200
    body = await response.json()
    return float(body["admit_per_s_target"]), str(body["admit_reason"])


@contextlib.asynccontextmanager
async def pipeline_reporting(
    redis_url: str, delay_ms: float, refused: int = 0
) -> AsyncIterator[None]:
    """A pipeline worker's health reports, as the reservation worker sends them, every 0.3 s."""
    redis = create_redis(redis_url, socket_timeout=2, max_connections=2)
    await redis.delete(HEALTH_KEY)
    reporter = HealthReporter(redis, "reservation:0")

    async def report() -> None:
        while True:
            await reporter.report(delay_ms, refused)
            await asyncio.sleep(0.3)

    task = asyncio.create_task(report())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await redis.delete(HEALTH_KEY)
        await redis.aclose()


async def started(client: Client, redis_url: str) -> str:
    concert = await on_sale(redis_url)
    await enter(client, concert, "first-fan")  # the admission loop learns the concert
    await eventually(lambda: _decided(client, concert), within=5)
    return concert


async def _decided(client: Client, concert: str) -> bool:
    return (await target(client, concert))[1] != "starting"


async def test_a_healthy_pipeline_raises_the_admit_rate_step_by_step(redis_url: str) -> None:
    async with (
        pipeline_reporting(redis_url, delay_ms=20),
        queue_instance(redis_url, **CONTROLLED) as q,
    ):
        concert = await started(q, redis_url)
        first, reason = await target(q, concert)
        assert reason == "healthy"
        await asyncio.sleep(3.2)
        later, _ = await target(q, concert)
        assert first + 20 <= later <= first + 45  # about 10/s each second, never a leap


async def test_a_pipeline_falling_behind_cuts_the_rate_and_says_why(redis_url: str) -> None:
    async with (
        pipeline_reporting(redis_url, delay_ms=3000),
        queue_instance(redis_url, **CONTROLLED) as q,
    ):
        concert = await started(q, redis_url)

        async def cut() -> bool:
            rate, reason = await target(q, concert)
            return reason == "behind" and rate < 50 * 0.7 + 0.01

        await eventually(cut, within=5)
        metrics = await (await q.get("/metrics")).text()
        assert (
            f'queue_admit_control_reason{{concert_id="{concert}",reason="behind"}} 1.0' in metrics
        )
        assert f'queue_admit_rate_target{{concert_id="{concert}"}}' in metrics


async def test_refusals_cut_the_rate_even_when_events_flow_quickly(redis_url: str) -> None:
    async with (
        pipeline_reporting(redis_url, delay_ms=20, refused=4),
        queue_instance(redis_url, **CONTROLLED) as q,
    ):
        concert = await started(q, redis_url)
        await eventually(lambda: _reason_is(q, concert, "refusing"), within=5)


async def test_a_silent_pipeline_slows_admission_to_the_floor_but_the_line_moves(
    redis_url: str,
) -> None:
    redis = create_redis(redis_url, socket_timeout=2, max_connections=1)
    await redis.delete(HEALTH_KEY)
    await redis.aclose()
    law = {**CONTROLLED, "QUEUE_ADMIT_FLOOR_PER_S": "20"}
    async with queue_instance(redis_url, **law) as q:
        concert = await started(q, redis_url)
        assert (await target(q, concert))[1] == "silent"

        async def at_floor() -> bool:
            return (await target(q, concert))[0] == 20.0

        await eventually(at_floor, within=8)
        await enter(q, concert, "second-fan")

        async def admitted() -> bool:
            body = await (await q.get(f"/v1/queue/{concert}")).json()
            return body["active"] == 2

        await eventually(admitted, within=3)  # 20/s: the floor still admits


async def test_two_instances_make_one_decision_per_period_and_admit_at_it(redis_url: str) -> None:
    async with (
        pipeline_reporting(redis_url, delay_ms=20),
        queue_instance(redis_url, **CONTROLLED) as a,
        queue_instance(redis_url, **CONTROLLED) as b,
    ):
        concert = await started(a, redis_url)
        await enter(b, concert, "other-fan")
        first, _ = await target(a, concert)
        await asyncio.sleep(4.2)
        later_a, _ = await target(a, concert)
        later_b, _ = await target(b, concert)
        assert later_a == later_b
        # Two instances deciding each period on their own would add 20/s a second.
        assert first + 30 <= later_a <= first + 55


async def _reason_is(client: Client, concert: str, reason: str) -> bool:
    return (await target(client, concert))[1] == reason
