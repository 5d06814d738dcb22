"""The spike scenario: many fans within seconds for far fewer seats, the gate governed by the
queue's admission controller (QUEUE_ADMIT_CONTROL=pipeline).

Each fan behaves as a browser would: enters, polls when `poll_after_ms` says, waits out every
503 for its `Retry-After`, and once admitted picks a seat it believes free, pays, and stops at
a final answer: bought, or sold out (the queue's `sold_out` status, or the `sale` field of an
admitted fan's token once nothing is left). A fan who never reaches one of those ended in an
error. Once a second the driver also reads the concert's admission (rate chosen, reason) for
the plot of admit rate, consumer lag and flow p99 over time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

import aiohttp

from perf.results import Scenario
from perf.samples import Sample, phase, series
from perf.scenarios.base import Context, Plan, empty_scenario
from perf.scenarios.client import Flows, create_concert, seat_counts
from perf.stats import percentile

BOUGHT, SOLD_OUT = "bought", "sold_out"  # the final answers; anything else is an error's cause
PATIENCE = 60  # 503s a fan waits out on one request before giving up (a browser's retries)


class Seats:
    """The driver's idea of which seats are free: taken when tried, given back when a try
    fails, so released seats are offered again."""

    def __init__(self, n: int) -> None:
        self.free = list(range(1, n + 1))
        random.shuffle(self.free)

    def take(self) -> str | None:
        return str(self.free.pop()) if self.free else None

    def give_back(self, seat: str) -> None:
        self.free.append(int(seat))


async def spike_async(ctx: Context, plan: Plan, sc: Scenario) -> None:
    q = ctx.urls["queue"]
    # 4,000 connections in all: a tried 12,000 let every poll through at once and tripled the
    # queue's 503s; the pool is the driver's backpressure.
    connector = aiohttp.TCPConnector(limit=4000)
    async with aiohttp.ClientSession(connector=connector) as http:
        concert = await create_concert(ctx, http, plan.spike_seats)
        flows = Flows(ctx, http, concert, patience=PATIENCE)
        seats = Seats(plan.spike_seats)
        waits: list[float] = []
        buyers: list[str] = []
        outcomes: dict[str, int] = {BOUGHT: 0, SOLD_OUT: 0}
        errors: dict[str, int] = {}  # cause -> fans
        positioned = 0
        sold_out_at: list[float] = []
        admission: dict[str, list[Any]] = {"t": [], "target": [], "measured": [], "reason": []}
        start = ctx.now()

        async def fan(i: int) -> str:
            nonlocal positioned
            await asyncio.sleep(random.uniform(0, plan.spike_arrival_s))
            user, entered = f"s{i}", time.monotonic()
            status, body = await flows.call(
                "POST",
                f"{q}/v1/queue/tokens",
                json={"concert_id": concert, "user_id": user},
                headers=flows.login(user),
            )
            if status == 410 and body.get("error", {}).get("code") == "sold_out":
                return SOLD_OUT  # told at once
            if status not in (200, 201):
                return f"entry answered {status}"
            positioned += 1
            token = body["token"]
            while body.get("status") == "waiting":
                await asyncio.sleep(body["poll_after_ms"] / 1000)
                status, body = await flows.call("GET", f"{q}/v1/queue/tokens/{token}")
                if status != 200:
                    return f"waiting, poll answered {status} {reason_of(body)}".strip()
            if body.get("status") == "sold_out":
                return SOLD_OUT
            if body.get("status") != "active":
                return f"token ended {body.get('status')}"
            waits.append(time.monotonic() - entered)
            while True:
                seat = seats.take()
                if seat is None:  # nothing free as far as the driver knows: ask the queue
                    await asyncio.sleep(1.0)
                    status, body = await flows.call("GET", f"{q}/v1/queue/tokens/{token}")
                    if status != 200:
                        return f"admitted, poll answered {status} {reason_of(body)}".strip()
                    if body.get("sale") == SOLD_OUT:
                        return SOLD_OUT
                    continue
                outcome = await flows.flow(user, token, seat, record=False)
                if outcome == "confirmed":
                    buyers.append(seat)
                    if len(buyers) == plan.spike_seats:
                        sold_out_at.append(ctx.now())
                    return BOUGHT
                seats.give_back(seat)  # not known to be sold: offered again
                if outcome == "error":
                    return "purchase failed"

        async def one(i: int) -> None:
            entered = time.monotonic()
            try:
                outcome = await fan(i)
            except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
                outcome = type(exc).__name__
            if outcome in outcomes:
                outcomes[outcome] += 1
            else:
                errors[outcome] = errors.get(outcome, 0) + 1
            flows.record(entered, outcome in outcomes)

        async def watch_admission() -> None:
            while True:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                    async with http.get(f"{q}/v1/queue/{concert}") as r:
                        if r.status == 200:
                            body = await r.json()
                            admission["t"].append(round(ctx.now(), 2))
                            admission["target"].append(body.get("admit_per_s_target"))
                            admission["measured"].append(body.get("admitted_per_s"))
                            admission["reason"].append(body.get("admit_reason"))
                await asyncio.sleep(1.0)

        ctx.live.label = "spike"
        watcher = asyncio.create_task(watch_admission())
        try:
            await asyncio.gather(*(one(i) for i in range(plan.spike_users)))
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
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
        flow_p99 = flow_p99_per_second(flows.accepted, start, end)
        sc["extra"] = {
            "fans": plan.spike_users,
            "seats": plan.spike_seats,
            "fans_with_a_position": positioned,
            "fans_bought": outcomes[BOUGHT],
            "fans_told_sold_out": outcomes[SOLD_OUT],
            "fans_with_an_error": sum(errors.values()),
            "errors_by_cause": errors,
            "seats_sold": sold,
            "time_to_sell_out_s": round(sold_out_at[0] - start, 2) if sold_out_at else None,
            "queue_wait_s": {f"p{q}": round(percentile(waits, q), 3) for q in (50, 95, 99)}
            | {"max": round(max(waits, default=float("nan")), 3)},
            "queue_wait_samples_s": [round(w, 3) for w in waits],
            "flow_p99_ms": round(percentile([s.ms for s in flows.accepted], 99), 1),
            "flow_p99_worst_second_ms": max((v for v in flow_p99["p99_ms"] if v), default=None),
            "seats_sold_twice": len(buyers) - len(set(buyers)),
            "seats_unsold_while_fans_were_told_sold_out": (
                plan.spike_seats - sold if outcomes[SOLD_OUT] and sold < plan.spike_seats else 0
            ),
            "seat_map_agrees": sold == len(buyers),
            "requests_retried_after_503": flows.retried,
            "admission_samples": admission,
            "flow_p99_samples": flow_p99,
        }


def reason_of(body: Any) -> str:
    """An error answer's code and reason, e.g. `token_expired dropped`."""
    error = body.get("error", {}) if isinstance(body, dict) else {}
    return f"{error.get('code', '')} {error.get('reason', '')}".strip()


def flow_p99_per_second(
    accepted: list[Sample], start: float, end: float
) -> dict[str, list[float | None]]:
    """p99 of the flows that finished in each second (from their accepted reservation)."""
    s = series(accepted, start, end)
    return {"t": list(s["t"]), "p99_ms": list(s["p99_ms"])}


def spike_scenario(ctx: Context, plan: Plan) -> Scenario:
    sc = empty_scenario(
        "spike", "fans", "every fan ends bought or sold out; no seat sold twice or left unsold"
    )
    asyncio.run(spike_async(ctx, plan, sc))
    sc["complete"] = True
    return sc
