"""The soak scenario: a long run at half the maximum."""

from __future__ import annotations

import asyncio

import aiohttp

from perf.results import Scenario
from perf.samples import phase, series
from perf.scenarios.base import MAX_SEATS, Context, Plan, empty_scenario
from perf.scenarios.client import Flows, admitted_users, create_concert, open_loop
from perf.stats import percentile


async def soak_async(ctx: Context, plan: Plan, rate: float, sc: Scenario) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4000)) as http:
        n = int(rate * plan.soak_seconds) + 1
        # A concert has at most MAX_SEATS seats: a long soak sells out several, one after the
        # other, as an on-sale with several shows would.
        sizes = [min(MAX_SEATS, n - i) for i in range(0, n, MAX_SEATS)]
        ctx.live.label = "admitting"
        parts = []
        for k, size in enumerate(sizes):
            flows = Flows(ctx, http, await create_concert(ctx, http, size))
            parts.append((flows, await admitted_users(flows, f"k{k}-", size)))
        ctx.live.label = f"soak {rate:.0f}/s"
        start = ctx.now()
        for flows, users in parts:  # each part ends when its users have all started
            await open_loop(flows, users, 1, lambda _: rate, plan.soak_seconds)
        end = ctx.now()
        samples = sorted((x for flows, _ in parts for x in flows.samples), key=lambda x: x.t)
        sc["phases"].append(
            phase(
                f"soak {rate:.0f} flows/s for {plan.soak_seconds} s",
                "soak",
                samples,
                started_t=start,
                duration_s=end - start,
                offered_per_s=rate,
            )
        )
        sc["timeseries"] = series(samples, start, end)
        span = max(1.0, min(60.0, (end - start) / 5))
        first = [x.ms for x in samples if x.t < start + span]
        last = [x.ms for x in samples if x.t >= end - span]
        sc["extra"] = {
            "window_s": span,
            "concerts": len(parts),
            "p99_first_window_ms": percentile(first, 99),
            "p99_last_window_ms": percentile(last, 99),
        }


def soak_scenario(ctx: Context, plan: Plan, reservation_max: float | None) -> Scenario:
    sc = empty_scenario("soak", "flows", "memory and latency flat over the run")
    rate = plan.soak_rate or (reservation_max / 2 if reservation_max else 50)
    asyncio.run(soak_async(ctx, plan, rate, sc))
    sc["complete"] = True
    return sc
