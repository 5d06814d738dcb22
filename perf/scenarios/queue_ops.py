"""The queue per operation (k6): `make bench-queue-workers` (`python -m perf.harness queue-ops`).

For 1 and then 2 queue worker processes: the bare aiohttp hello app (perf/hello.py, as many
processes) as the ceiling, then token issue, status poll and validate, each as a saturation phase
(constant VUs) and a fixed-rate phase (`ops_rate` requests/s offered) for its p99. The queue is
restarted for each worker count and setting; CPU per process comes from the harness's collector
(perf.harness adds it per phase), so the per-operation table (`extra["per_operation"]`) carries
the queue's requests per CPU-second beside its throughput.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from infra.stack import ServiceProc
from perf.k6_summary import parse_summary
from perf.results import Phase, Scenario
from perf.samples import Sample, phase, series
from perf.scenarios.base import QUEUE_CRITERION, Context, Plan, empty_scenario, run_k6
from perf.scenarios.queue import on_sale, serve_hello

OPS = ("issue", "poll", "validate")
MODES = ("saturate", "fixed")
# Loopback load: one client IP and a few users would trip the entry limits at once.
NO_RATE_LIMITS = {
    "QUEUE_ENTRY_RATE_PER_IP": "0",
    "QUEUE_ENTRY_RATE_PER_USER": "0",
    "QUEUE_ADMIT_CONTROL": "fixed",  # the queue alone is measured, not the pipeline behind it
}
# Validation needs active tokens: admit everyone at the next admission tick.
OPEN_GATE = {**NO_RATE_LIMITS, "QUEUE_ADMIT_PER_S": "1000000", "QUEUE_MAX_ACTIVE": "10000000"}
SETTINGS = ((("issue", "poll"), NO_RATE_LIMITS), (("validate",), OPEN_GATE))
SETUP_ALLOWANCE_S = 60.0  # k6 start, setup (pool creation, up to 20 s activation wait), grace

Restart = Callable[[int, dict[str, str]], ServiceProc]  # (workers, settings) -> the queue


def phase_name(workers: int, op: str, mode: str) -> str:
    return f"w{workers} {op} {mode}"


def queue_ops_scenario(ctx: Context, plan: Plan, restart: Restart) -> Scenario:
    p99, errors = QUEUE_CRITERION
    sc = empty_scenario("queue-ops", "requests", f"p99 <= {p99:.0f} ms and errors <= {errors:.1%}")
    dropped: dict[str, int] = {}
    everything: list[Sample] = []
    for workers in plan.ops_workers:
        with serve_hello(ctx, workers) as url:
            for mode in MODES:
                name = phase_name(workers, "hello", mode)
                sc["phases"].append(
                    ops_phase(ctx, plan, name, url, "hello", mode, dropped, everything)
                )
        for ops, settings in SETTINGS:
            url = restart(workers, settings).url
            for op in ops:
                for mode in MODES:
                    name = phase_name(workers, op, mode)
                    sc["phases"].append(
                        ops_phase(ctx, plan, name, url, op, mode, dropped, everything)
                    )
    if sc["phases"]:
        last = sc["phases"][-1]
        first = sc["phases"][0]["started_t"]
        sc["timeseries"] = series(everything, first, last["started_t"] + last["duration_s"])
    sc["extra"] = {
        "workers": list(plan.ops_workers),
        "saturation_vus": plan.ops_vus,
        "fixed_rate_per_s": plan.ops_rate,
        "dropped_iterations": dropped,
        "service_env": {"issue,poll": NO_RATE_LIMITS, "validate": OPEN_GATE},
    }
    sc["complete"] = True
    return sc


def ops_phase(
    ctx: Context,
    plan: Plan,
    name: str,
    url: str,
    op: str,
    mode: str,
    dropped: dict[str, int],
    everything: list[Sample],
) -> Phase:
    """One k6 phase; its k6-dropped iterations go to `dropped`, its samples to `everything`."""
    env = {
        "BASE_URL": url,
        "OP": op,
        "MODE": mode,
        "DURATION_S": str(plan.ops_seconds),
        "WARMUP_S": str(plan.ops_warmup_s),
        "VUS": str(plan.ops_vus),
        "RATE": str(plan.ops_rate),
        "POOL_SIZE": str(plan.ops_pool),
        "CONCERT_ID": "hello" if op == "hello" else on_sale(ctx),
        "IDENTITY_SECRET": ctx.identity_secret,
    }
    file_name = name.replace(" ", "-")
    samples = run_k6(ctx, file_name, env, plan.ops_seconds + plan.ops_warmup_s + SETUP_ALLOWANCE_S)
    summary = json.loads((ctx.workdir / "k6" / f"{file_name}.json").read_text())
    dropped[name] = parse_summary(summary).dropped_iterations
    everything += samples
    start = min((s.t for s in samples), default=ctx.now())
    offered = float(plan.ops_rate) if mode == "fixed" else None
    kind = "fixed" if mode == "fixed" else "saturate"
    return phase(
        name, kind, samples, started_t=start, duration_s=plan.ops_seconds, offered_per_s=offered
    )


def per_operation(sc: Scenario, cpu_by_phase: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """One row per worker count and operation: saturation throughput and p99, the fixed-rate
    p99 and the iterations k6 could not start in time there, errors, the share of bare aiohttp's
    throughput with as many processes, CPU % of one core of the service (queue or hello), k6,
    Redis and all others during saturation, and the service's requests per CPU-second."""
    by_name = {p["name"]: p for p in sc["phases"]}
    counted = sc["extra"].get("dropped_iterations")
    dropped = counted if isinstance(counted, dict) else {}
    rows = []
    workers_run = sc["extra"].get("workers")
    for workers in workers_run if isinstance(workers_run, list) else []:
        hello = by_name.get(phase_name(int(workers), "hello", "saturate"))
        for op in ("hello", *OPS):
            sat = by_name.get(phase_name(int(workers), op, "saturate"))
            fixed = by_name.get(phase_name(int(workers), op, "fixed"))
            if sat is None:
                continue
            cpu = cpu_by_phase.get(sat["name"], {})
            name = "hello" if op == "hello" else "queue"
            service = cpu.get(name, math.nan)
            shown = {name: service, "k6": cpu.get("k6", math.nan), "redis": cpu.get("redis", 0.0)}
            shown["others"] = sum(v for k, v in cpu.items() if k not in shown)
            rate = sat["throughput_per_s"]
            rows.append(
                {
                    "workers": workers,
                    "op": op,
                    "req_per_s": round(rate, 1),
                    "p99_ms": round(sat["latency_ms"]["p99"], 2),
                    "p99_ms_fixed": round(fixed["latency_ms"]["p99"], 2) if fixed else None,
                    "errors": sat["errors"] + (fixed["errors"] if fixed else 0),
                    "over_hello": round(rate / hello["throughput_per_s"], 2)
                    if hello and hello["throughput_per_s"]
                    else None,
                    "dropped_fixed": dropped.get(fixed["name"], 0) if fixed else None,
                    "cpu_pct": {k: round(v, 1) for k, v in shown.items()},
                    "req_per_cpu_s": round(rate / (service / 100)) if service > 0 else None,
                }
            )
    return rows
