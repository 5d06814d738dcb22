"""The reservation + payment scenario, and the raw aiokafka ceiling beside it."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from perf.ledger import end_offsets_by_topic, records_per_flow
from perf.results import Scenario
from perf.samples import max_sustainable, phase, series
from perf.scenarios.base import FLOW_CRITERION, MAX_SEATS, Context, Plan, empty_scenario
from perf.scenarios.client import Flows, admitted_users, create_concert, open_loop, seat_counts
from perf.stats import percentile


async def reservation_async(ctx: Context, plan: Plan, sc: Scenario) -> None:
    ramp_avg = (plan.flow_ramp_from + plan.flow_ramp_to) / 2
    n_steady = plan.flow_steady_rate * plan.flow_steady_seconds
    n_fixed = plan.flow_rate * plan.flow_seconds
    n_ramp = int(ramp_avg * plan.flow_ramp_seconds) + 1
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4000)) as http:
        concert = await create_concert(ctx, http, min(MAX_SEATS, n_steady + n_fixed + n_ramp))
        flows = Flows(ctx, http, concert)
        ctx.live.label = "admitting"
        users = await admitted_users(flows, "r", n_steady + n_fixed + n_ramp)
        steady_users = users[:n_steady]
        users = users[n_steady:]
        ctx.live.label = f"flows {plan.flow_rate}/s"
        fixed_start = ctx.now()
        await open_loop(flows, users[:n_fixed], 1, lambda _: plan.flow_rate, plan.flow_seconds)
        sc["phases"].append(
            phase(
                f"target {plan.flow_rate} flows/s",
                "fixed",
                [x for x in flows.samples if x.t >= fixed_start],
                started_t=fixed_start,
                duration_s=ctx.now() - fixed_start,
                offered_per_s=plan.flow_rate,
            )
        )
        ctx.live.label = "flows ramp"
        ramp_start = ctx.now()
        span = plan.flow_ramp_to - plan.flow_ramp_from

        def rate(elapsed: float) -> float:
            return plan.flow_ramp_from + span * min(1.0, elapsed / plan.flow_ramp_seconds)

        await open_loop(flows, users[n_fixed:], n_fixed + 1, rate, plan.flow_ramp_seconds)
        ramp_end = ctx.now()
        ramp_samples = [s for s in flows.samples if s.t >= ramp_start]
        sc["phases"].append(
            phase(
                f"ramp {plan.flow_ramp_from}->{plan.flow_ramp_to} flows/s",
                "ramp",
                ramp_samples,
                started_t=ramp_start,
                duration_s=ramp_end - ramp_start,
                offered_per_s=None,
            )
        )
        p99, errors = FLOW_CRITERION
        sc["max_sustainable_per_s"] = max_sustainable(
            ramp_samples, ramp_start, ramp_end, p99_limit_ms=p99, error_limit=errors
        )
        # Steady, below saturation, last: the broker's JIT is warm and the backlog drained. The
        # CPU ledger and the records per flow are read here.
        ctx.live.label = f"flows {plan.flow_steady_rate}/s"
        offsets_before = await end_offsets_by_topic(ctx.brokers)
        steady_start = ctx.now()
        await open_loop(
            flows,
            steady_users,
            len(users) + 1,  # the seats after the ramp's
            lambda _: plan.flow_steady_rate,
            plan.flow_steady_seconds,
        )
        steady = [x for x in flows.samples if x.t >= steady_start]
        sc["phases"].append(
            phase(
                f"steady {plan.flow_steady_rate} flows/s",
                "fixed",
                steady,
                started_t=steady_start,
                duration_s=ctx.now() - steady_start,
                offered_per_s=plan.flow_steady_rate,
            )
        )
        records = records_per_flow(
            offsets_before, await end_offsets_by_topic(ctx.brokers), sum(x.ok for x in steady)
        )
        sc["timeseries"] = series(flows.samples, fixed_start, ctx.now())
        sold = await seat_counts(ctx, http, concert, len(flows.confirmed))
        ctx.live.label = "raw aiokafka"
        raw = await raw_ceiling(ctx.brokers, 5000 if plan.smoke else 50_000)
        best = sc["max_sustainable_per_s"]
        per_flow = records.get("total")
        sc["extra"] = {
            "raw_aiokafka_records_per_s": round(raw, 1),
            # Counted from the brokers' end offsets (changelogs included), per completed flow
            # of the steady phase.
            "records_per_flow": per_flow,
            "records_per_flow_by_topic": {k: v for k, v in records.items() if k != "total"},
            "max_sustainable_records_over_raw": (
                round(best * per_flow / raw, 4) if best and raw and per_flow else None
            ),
            "seats_confirmed_by_flows": len(flows.confirmed),
            "seats_sold_in_seat_map": sold,
            "seats_sold_twice": len(flows.confirmed) - len(set(flows.confirmed)),
            # Load shedding: 503 + Retry-After answers the driver followed, and flows still
            # refused after five tries (counted as errors above).
            "requests_retried_after_503": flows.retried,
            "flows_refused_overloaded": flows.refused,
            "refusal_p99_ms": round(percentile(flows.refusal_ms, 99), 1)
            if flows.refusal_ms
            else None,
            **{
                f"accepted_flow_p99_ms_{name}": round(percentile([x.ms for x in part], 99), 1)
                for name, part in (
                    ("fixed", [x for x in flows.accepted if fixed_start <= x.t < ramp_start]),
                    ("ramp", [x for x in flows.accepted if ramp_start <= x.t < steady_start]),
                )
                if part
            },
        }


def reservation_scenario(ctx: Context, plan: Plan) -> Scenario:
    p99, errors = FLOW_CRITERION
    sc = empty_scenario(
        "reservation", "flows", f"flow p99 <= {p99:.0f} ms and errors <= {errors:.1%}"
    )
    asyncio.run(reservation_async(ctx, plan, sc))
    sc["complete"] = True
    return sc


async def raw_ceiling(brokers: str, n: int) -> float:
    """aiokafka alone on the same broker: produce n ~300-byte records and consume them back."""
    topic = f"perf-raw-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 4, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=brokers, linger_ms=2, acks="all")
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=brokers, auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    try:
        started = time.perf_counter()

        async def produce() -> None:
            futures = [await producer.send(topic, b"x" * 300, key=b"%d" % i) for i in range(n)]
            await asyncio.gather(*futures)

        async def consume() -> None:
            seen = 0
            while seen < n:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    seen += len(records)

        await asyncio.gather(produce(), consume())
        return n / (time.perf_counter() - started)
    finally:
        await producer.stop()
        await consumer.stop()
