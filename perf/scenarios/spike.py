"""The spike scenario: many fans within seconds for far fewer seats."""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp

from perf.results import Scenario
from perf.samples import phase, series
from perf.scenarios.base import Context, Plan, empty_scenario
from perf.scenarios.client import Flows, create_concert, seat_counts
from perf.stats import percentile


async def spike_async(ctx: Context, plan: Plan, sc: Scenario) -> None:
    q = ctx.urls["queue"]
    connector = aiohttp.TCPConnector(limit=4000)
    async with aiohttp.ClientSession(connector=connector) as http:
        concert = await create_concert(ctx, http, plan.spike_seats)
        flows = Flows(ctx, http, concert)
        free = list(range(1, plan.spike_seats + 1))
        random.shuffle(free)
        waits: list[float] = []
        buyers: list[str] = []
        sold_out_at: list[float] = []
        start = ctx.now()

        async def fan(i: int) -> None:
            """Arrive, wait in line, buy a seat or leave when sold out; one sample per fan
            (ok unless something failed: a sold-out answer is a clean outcome)."""
            await asyncio.sleep(random.uniform(0, plan.spike_arrival_s))
            user, entered = f"s{i}", time.monotonic()
            try:
                status, body = await flows.call(
                    "POST",
                    f"{q}/v1/queue/tokens",
                    json={"concert_id": concert, "user_id": user},
                    headers=flows.login(user),
                )
                if status not in (200, 201):
                    return flows.record(entered, False)
                token = body["token"]
                while body.get("status") == "waiting" and free:
                    await asyncio.sleep(body["poll_after_ms"] / 1000)
                    status, body = await flows.call("GET", f"{q}/v1/queue/tokens/{token}")
                    if status != 200:
                        return flows.record(entered, False)
                if body.get("status") != "active" or not free:
                    async with http.delete(f"{q}/v1/queue/tokens/{token}") as gone:
                        return flows.record(entered, gone.status == 204)  # sold out: leaves
                waits.append(time.monotonic() - entered)
                while free:
                    seat = str(free.pop())
                    outcome = await flows.flow(user, token, seat, record=False)
                    if outcome == "error":
                        free.append(int(seat))  # not known to be sold: back in the pool
                        return flows.record(entered, False)
                    if outcome == "confirmed":
                        buyers.append(seat)
                        if len(buyers) == plan.spike_seats:
                            sold_out_at.append(ctx.now())
                        break
                flows.record(entered, True)
            except (aiohttp.ClientError, TimeoutError, KeyError, ValueError):
                flows.record(entered, False)

        ctx.live.label = "spike"
        await asyncio.gather(*(fan(i) for i in range(plan.spike_users)))
        end = ctx.now()
        sc["phases"].append(
            phase(
                f"{plan.spike_users} fans in {plan.spike_arrival_s:.0f} s for "
                f"{plan.spike_seats} seats",
                "spike",
                flows.samples,
                started_t=start,
                duration_s=end - start,
                offered_per_s=None,
            )
        )
        sc["timeseries"] = series(flows.samples, start, end)
        sold = await seat_counts(ctx, http, concert, len(buyers))
        sc["extra"] = {
            "fans": plan.spike_users,
            "seats": plan.spike_seats,
            "seats_sold": sold,
            "time_to_sell_out_s": round(sold_out_at[0] - start, 2) if sold_out_at else None,
            "queue_wait_s": {f"p{q}": round(percentile(waits, q), 3) for q in (50, 95, 99)}
            | {"max": round(max(waits, default=float("nan")), 3)},
            "queue_wait_samples_s": [round(w, 3) for w in waits],
            "seats_sold_twice": len(buyers) - len(set(buyers)),
            "seat_map_agrees": sold == len(buyers),
            "requests_retried_after_503": flows.retried,
        }


def spike_scenario(ctx: Context, plan: Plan) -> Scenario:
    sc = empty_scenario("spike", "flows", "every seat sold once; queue waits bounded")
    asyncio.run(spike_async(ctx, plan, sc))
    sc["complete"] = True
    return sc
