"""Fans following their place over Server-Sent Events: `make bench-sse` (`perf.harness sse`).

For each count in `plan.sse_fans`: the queue is restarted with its gate closed (nobody is
admitted, so every fan keeps a stream open), that many fans enter a fresh one-seat concert
through the API, and this process opens one event stream per fan. Measured:
- memory per stream: the queue's RSS with every stream open, minus before, per stream;
- idle cost: the queue's CPU while every stream stays open and nothing moves (`sse_idle_s`);
- Redis reads: WATCH calls per second meanwhile (one per concert per push tick, whatever the
  number of fans);
- fan-out: the concert sells out (the seat fact the queue's consumer applies, written through
  the queue's own store) and every stream is told. Each stream's time from the sale to its
  `sold_out` is a sample of the phase; a stream not told within `FANOUT_TIMEOUT_S` is an error.
The figures per count are `extra["sse"]`, a table of the report.
"""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import orjson
from prometheus_client import CollectorRegistry

from infra.stack import ServiceProc
from perf.collector import rss_mb
from perf.machine import process_cpu_s
from perf.results import Phase, Scenario
from perf.samples import Sample, phase
from perf.scenarios.base import Context, Plan, empty_scenario
from perf.scenarios.client import post_concert
from perf.scenarios.queue_ops import Restart
from services.queue.store import QueueStore
from shared.identity import mint
from shared.redis_client import create_redis

CLOSED_GATE = {
    "QUEUE_ADMIT_CONTROL": "fixed",
    "QUEUE_ADMIT_PER_S": "0",  # nobody is admitted: every fan keeps a stream open
    "QUEUE_ENTRY_RATE_PER_IP": "0",  # every fan comes from this one address
    "QUEUE_ENTRY_RATE_PER_USER": "0",
    "QUEUE_PUSH_INTERVAL_MS": "500",
}
OPEN_BATCH = 500  # streams opened at a time, as fans trickle in
FANOUT_TIMEOUT_S = 60.0


class Stream:
    """One fan's open stream: told that it is open, and when it said sold out."""

    def __init__(self) -> None:
        self.sold_out_at = 0.0
        self.first = asyncio.Event()

    async def follow(self, http: aiohttp.ClientSession, url: str) -> None:
        async with http.get(url) as response:
            if response.status != 200:
                raise RuntimeError(f"stream refused: {response.status} {await response.text()}")
            async for raw in response.content:
                line = raw.decode()
                if line.startswith("data: "):
                    if orjson.loads(line[6:])["status"] == "sold_out":
                        self.sold_out_at = time.monotonic()
                    self.first.set()


def sse_scenario(ctx: Context, plan: Plan, restart: Restart) -> Scenario:
    sc = empty_scenario("sse", "streams", f"every stream told within {FANOUT_TIMEOUT_S:.0f} s")
    rows: list[dict[str, float]] = []
    for fans in plan.sse_fans:
        queue = restart(1, CLOSED_GATE)
        ctx.live.label = f"sse {fans}"
        row, fanout = asyncio.run(one_count(ctx, plan, queue, fans))
        rows.append(row)
        sc["phases"].append(fanout)
    sc["extra"] = {"sse": rows, "push_interval_ms": float(CLOSED_GATE["QUEUE_PUSH_INTERVAL_MS"])}
    sc["complete"] = True
    return sc


async def one_count(
    ctx: Context, plan: Plan, queue: ServiceProc, fans: int
) -> tuple[dict[str, float], Phase]:
    pid, base = queue.procs[0].pid, queue.url
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        concert = await post_concert(http, ctx.urls["reservation"], ctx.admin_token, 1, "sse")
        tokens = await enter(ctx, http, base, concert, fans)
        await asyncio.sleep(2)
        before = rss_mb(pid)
        streams = [Stream() for _ in range(fans)]
        tasks = []
        for start in range(0, fans, OPEN_BATCH):
            batch = range(start, min(fans, start + OPEN_BATCH))
            for i in batch:
                url = f"{base}/v1/queue/tokens/{tokens[i]}/events"
                tasks.append(asyncio.create_task(streams[i].follow(http, url)))
            opening = (streams[i].first.wait() for i in batch)
            await asyncio.wait_for(asyncio.gather(*opening), FANOUT_TIMEOUT_S)
        await asyncio.sleep(3)
        opened = rss_mb(pid)

        watch_0, cpu_0, t_0 = await watch_calls(http, base), process_cpu_s(pid), time.monotonic()
        await asyncio.sleep(plan.sse_idle_s)
        idle_s = time.monotonic() - t_0
        idle_cpu = (process_cpu_s(pid) - cpu_0) / idle_s * 100
        watch_rate = (await watch_calls(http, base) - watch_0) / idle_s

        cpu_1, sold_at = process_cpu_s(pid), time.monotonic()
        redis = create_redis(ctx.redis_url, socket_timeout=2, max_connections=1)
        try:
            await QueueStore(redis, CollectorRegistry()).seats([(concert, "1", "s", 1)], 3600)
        finally:
            await redis.aclose()
        await asyncio.wait(tasks, timeout=FANOUT_TIMEOUT_S)
        fanout_cpu = process_cpu_s(pid) - cpu_1
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    samples = [
        Sample(s.sold_out_at - ctx.t0, (s.sold_out_at - sold_at) * 1000, True)
        if s.sold_out_at
        else Sample(sold_at - ctx.t0, FANOUT_TIMEOUT_S * 1000, False)
        for s in streams
    ]
    sold_t = sold_at - ctx.t0
    last = max((s.t for s in samples), default=sold_t)
    fanout = phase(
        f"{fans} streams told sold out",
        "fanout",
        samples,
        started_t=sold_t,
        duration_s=last - sold_t + 0.001,  # the phase holds its last sample
        offered_per_s=None,
    )
    row = {
        "fans": fans,
        "rss_before_mb": round(before, 1),
        "rss_open_mb": round(opened, 1),
        "kib_per_stream": round((opened - before) * 1024 / fans, 1),
        "idle_cpu_pct": round(idle_cpu, 1),
        "watch_per_s": round(watch_rate, 1),
        "fanout_cpu_s": round(fanout_cpu, 2),
    }
    return row, fanout


async def enter(
    ctx: Context, http: aiohttp.ClientSession, base: str, concert: str, fans: int
) -> list[str]:
    """Every fan's queue token, 200 entries at a time; the concert may take a moment to be
    on sale at the queue after it is created, so the first entry is retried until it is."""
    gate = asyncio.Semaphore(200)

    async def one(i: int, patience_s: float = 0.0) -> str:
        jwt = mint(ctx.identity_secret, f"sse-fan-{i:06d}")
        give_up = time.monotonic() + patience_s
        while True:
            async with (
                gate,
                http.post(
                    f"{base}/v1/queue/tokens",
                    json={"concert_id": concert},
                    headers={"Authorization": f"Bearer {jwt}"},
                ) as r,
            ):
                if r.status == 201:
                    return str((await r.json())["token"])
                if time.monotonic() > give_up:
                    raise RuntimeError(f"entry refused: {r.status} {await r.text()}")
            await asyncio.sleep(0.2)

    first = await one(0, patience_s=30.0)
    return [first, *await asyncio.gather(*(one(i) for i in range(1, fans)))]


async def watch_calls(http: aiohttp.ClientSession, base: str) -> float:
    """How many gate reads (WATCH) the queue has made so far, from its /metrics."""
    async with http.get(f"{base}/metrics") as r:
        text = await r.text()
    pattern = r'^redis_call_duration_seconds_count\{op="watch"\} (\S+)$'
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0
