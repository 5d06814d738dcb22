"""Running one failure case: `run_case` drives the load, injects the fault, checks the
invariants and returns the case's figures."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from perf.chaos.cases import Case, Size
from perf.chaos.fans import Answer, Fans, Ledger
from perf.chaos.faults import create_concert, one_failover
from perf.chaos.invariants import TOKENS_CHECK, check
from perf.chaos.roles import RoleWatch
from perf.chaos.timeline import Timeline, per_second
from perf.chaos.topology import HOLD_S, running


async def run_case(case: Case, workdir: Path, size: Size) -> dict[str, Any]:
    async with running(case.topology, workdir, case.env) as env:
        connector = aiohttp.TCPConnector(limit=500)
        timeout = aiohttp.ClientTimeout(total=15)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            seats = int(size.fans_per_s * size.seconds) // 2
            ledger = Ledger(await create_concert(env, http, seats), seats)
            env.concert = ledger.concert
            fans = Fans(http, env.urls, env.stack.env["IDENTITY_JWT_SECRET"], ledger)
            timeline = Timeline(env.brokers)
            sampler = asyncio.create_task(timeline.sample(fans.now))
            roles = RoleWatch(env.sentinel, fans.now) if env.sentinel else None
            watch = asyncio.create_task(roles.sample()) if roles else None
            load = asyncio.create_task(fans.steady(size.fans_per_s, size.seconds))
            try:
                await asyncio.sleep(max(0.0, size.fault_at_s - fans.now()))
                injected_at = fans.now()
                fault_figures = await case.fault(env)
                await load
            finally:
                load.cancel()
                sampler.cancel()
                if watch:
                    watch.cancel()
            fault_violations = fault_figures.pop("violations", [])
            if env.sentinel is not None:
                fault_violations += one_failover(env.sentinel)
            load_s = fans.now()
            verdict = await check(http, env.urls, env.brokers, ledger, bound_s=HOLD_S + 60)
            if fault_violations:
                verdict.violations["the fault's own checks"] = fault_violations
            if case.may_lose_tokens:  # measured and named below, not silently gone
                verdict.violations[TOKENS_CHECK] = []
    return figures(case, size, ledger, injected_at, load_s, fault_figures, verdict) | {
        "redis_roles": roles.changes if roles else [],
        "supervisor": env.log,
        "timeline": {
            "t": timeline.t,
            "reservation_lag": timeline.lag,
            "flows_done_per_s": per_second(ledger.flows_done, load_s),
        },
    }


def latencies(answers: list[Answer]) -> dict[str, list[float]]:
    """p50 and p99 (ms) of the answered requests of each step (what a token write costs with
    QUEUE_WAIT_REPLICAS is the `enter` row)."""
    by_op: dict[str, list[float]] = {}
    for a in answers:
        if a.status and a.status < 500:
            by_op.setdefault(a.op, []).append(a.ms)
    out = {}
    for op, values in by_op.items():
        values.sort()
        out[op] = [round(values[len(values) // 2], 1), round(values[int(len(values) * 0.99)], 1)]
    return out


def figures(
    case: Case,
    size: Size,
    ledger: Ledger,
    injected_at: float,
    load_s: float,
    fault: dict[str, Any],
    verdict: Any,
) -> dict[str, Any]:
    answers = ledger.answers
    failed = [a for a in answers if a.failed and a.t >= injected_at - 0.5]
    window = (failed[-1].t - failed[0].t) if failed else 0.0
    refused = Counter(a.code or "unavailable" for a in answers if a.status == 503)
    lost_202 = verdict.violations["every 202 reaches a terminal status"]
    return {
        "case": case.name,
        "what": case.what,
        "topology": case.topology,
        "env": case.env,
        "load": {"fans_per_s": size.fans_per_s, "seconds": size.seconds},
        "fault_at_s": round(injected_at, 1),
        "fault": fault,
        "requests": len(answers),
        "refused_503": sum(refused.values()),
        "refused_by_code": dict(refused),
        "no_answer": sum(1 for a in answers if a.status == 0),
        "server_errors_5xx": sum(1 for a in answers if a.status >= 500 and a.status != 503),
        "error_window_s": round(window, 1),
        "recovered_after_s": round(failed[-1].t - injected_at, 1) if failed else 0.0,
        "latency_ms": latencies(answers),
        "fans": int(size.fans_per_s * size.seconds),
        "gave_up": ledger.gave_up,
        "tokens_acknowledged": len(ledger.tokens),
        "tokens_lost": len(verdict.tokens_lost),
        "tokens_lost_users": verdict.tokens_lost[:20],
        "tokens_lost_by_reason": verdict.tokens_lost_by_reason,
        "tokens_lost_acknowledged_s": [  # when the first and the last lost token were given
            round(ledger.token_at[u], 1) for u in verdict.tokens_lost[:1] + verdict.tokens_lost[-1:]
        ],
        "tokens_may_be_lost": case.may_lose_tokens,
        "accepted_202": len(ledger.accepted),
        "paid_202": len(ledger.paid),
        "confirmed": verdict.confirmed,
        "accepted_lost": len(lost_202),
        "terminal_after_s": verdict.terminal_after_s,
        "load_s": round(load_s, 1),
        "checks": {name: v[:10] for name, v in verdict.violations.items()},
        "holds": verdict.holds,
    }
