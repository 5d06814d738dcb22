"""The queue scenario (k6): token issue and validation at a fixed rate, then a ramp."""

from __future__ import annotations

import asyncio
import functools
import math
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from infra.processes import free_port, spawn, stop, wait_until
from perf.results import Scenario
from perf.samples import max_sustainable, phase, series
from perf.scenarios.base import QUEUE_CRITERION, Context, Plan, empty_scenario, run_k6
from perf.scenarios.client import post_concert


def on_sale(ctx: Context) -> str:
    """A fresh concert for a k6 phase: the queue admits entries only for concerts on sale."""

    async def create() -> str:
        async with aiohttp.ClientSession() as http:
            return await post_concert(
                http, ctx.urls["reservation"], ctx.admin_token, 1000, "perf-q"
            )

    return asyncio.run(create())


def queue_scenario(ctx: Context, plan: Plan) -> Scenario:
    p99, errors = QUEUE_CRITERION
    sc = empty_scenario("queue", "requests", f"p99 <= {p99:.0f} ms and errors <= {errors:.1%}")
    base = {"BASE_URL": ctx.urls["queue"], "OP": "flow", "WARMUP_S": "2", "POOL_SIZE": "500"}
    base["IDENTITY_SECRET"] = ctx.identity_secret
    fixed_start = ctx.now()
    fixed = run_k6(
        ctx,
        "queue-fixed",
        {
            **base,
            "MODE": "fixed",
            "RATE": str(plan.queue_rate),
            "DURATION_S": str(plan.queue_seconds),
            "CONCERT_ID": on_sale(ctx),
        },
        plan.queue_seconds + 90,
    )
    start = min((s.t for s in fixed), default=fixed_start)
    sc["phases"].append(
        phase(
            f"target {plan.queue_rate} iterations/s (x3 requests)",
            "fixed",
            fixed,
            started_t=start,
            duration_s=plan.queue_seconds,
            offered_per_s=plan.queue_rate * 3,
        )
    )
    ramp = run_k6(
        ctx,
        "queue-ramp",
        {
            **base,
            "MODE": "ramp",
            "RATE": str(plan.queue_ramp_from),
            "RATE_TO": str(plan.queue_ramp_to),
            "DURATION_S": str(plan.queue_ramp_seconds),
            "FIXED_VUS": "200",
            "CONCERT_ID": on_sale(ctx),
        },
        plan.queue_ramp_seconds + 90,
    )
    ramp_start = min((s.t for s in ramp), default=ctx.now())
    sc["phases"].append(
        phase(
            f"ramp {plan.queue_ramp_from * 3}->{plan.queue_ramp_to * 3} requests/s",
            "ramp",
            ramp,
            started_t=ramp_start,
            duration_s=plan.queue_ramp_seconds,
            offered_per_s=None,
        )
    )
    everything = fixed + ramp
    sc["timeseries"] = series(everything, start, ramp_start + plan.queue_ramp_seconds)
    sc["max_sustainable_per_s"] = max_sustainable(
        ramp,
        ramp_start,
        ramp_start + plan.queue_ramp_seconds,
        p99_limit_ms=p99,
        error_limit=errors,
    )
    hello = hello_ceiling(ctx, plan)
    best = sc["max_sustainable_per_s"]
    sc["extra"] = {
        "requests_per_token": 3,  # each k6 iteration: enter, poll, validate
        "bare_aiohttp_hello_req_per_s": round(hello, 1),
        "max_sustainable_over_bare_aiohttp": round(best / hello, 3) if best and hello else None,
    }
    sc["complete"] = True
    return sc


def hello_ceiling(ctx: Context, plan: Plan) -> float:
    """Saturated throughput of a bare aiohttp app on this machine: the queue's ceiling."""
    with serve_hello(ctx, 1) as url:
        seconds = 3 if plan.smoke else 10
        env = {"BASE_URL": url, "OP": "hello", "MODE": "saturate"}
        env |= {"VUS": "64", "DURATION_S": str(seconds), "WARMUP_S": "1"}
        samples = run_k6(ctx, "hello", env, seconds + 60)
    ok = [s for s in samples if s.ok]
    if len(ok) < 2:
        return math.nan
    span = ok[-1].t - ok[0].t
    return len(ok) / span if span > 0 else math.nan


@contextmanager
def serve_hello(ctx: Context, workers: int) -> Iterator[str]:
    """The bare hello app (perf/hello.py) as `workers` processes sharing one port, sampled by
    the collector as "hello" while it runs; yields its URL."""
    port = free_port()
    argv = [sys.executable, "-m", "perf.hello", "--port", str(port)]
    if workers > 1:
        argv.append("--reuse-port")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(workers):
            log = ctx.workdir / "k6" / f"hello-w{workers}-{i}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            procs.append(spawn(argv, log=log))
            up = functools.partial(listening, log)
            wait_until(up, timeout=30, what="perf.hello", proc=procs[-1], log=log)
        ctx.load_pids["hello"] = [p.pid for p in procs]
        yield f"http://127.0.0.1:{port}"
    finally:
        ctx.load_pids.pop("hello", None)
        for proc in procs:
            stop(proc)


def listening(log: Path) -> bool:
    """perf.hello prints `listening on` once its socket is bound."""
    return log.exists() and "listening on" in log.read_text(errors="replace")
