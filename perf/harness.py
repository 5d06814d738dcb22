"""Run load-test scenarios and write the report: `python -m perf.harness [--smoke] SCENARIO...`.

Scenarios: queue, queue-ops, reservation, spike, soak, sse (`all` = every one). `make perf`,
`make perf-queue`, `make bench-queue-workers` (queue-ops), `make bench-sse` (sse),
`make perf-reservation`, `make perf-spike`, `make perf-soak` and `make perf-smoke` (a few
minutes, small rates, in CI: it checks that a sane report comes out, not speed) run it.

Starts the embedded stack (or uses REDIS_URL / KAFKA_BROKERS), samples it once a second
(perf.collector) with a status line, runs the scenarios, and writes
perf/reports/<UTC timestamp>[-<scenarios>][-smoke]/{results.json, report.md, *.png} (a run of
only some scenarios is named by them); perf/reports/latest points at the newest run of every
scenario. Everything started is stopped at the end, on Ctrl-C and on failure; a run that fails
or is cut short says so in its report.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from infra.kafka_broker import KAFKA_VERSION
from infra.processes import free_port, stop
from infra.stack import ROOT, ServiceProc, Stack
from perf.collector import Sampler
from perf.goals import goal_rows
from perf.ledger import cpu_ms_per_flow
from perf.machine import command_version, cores, cpu_model, package_version, python_version
from perf.report.analysis import Window, mean_per_key
from perf.report.sections import NOT_FACTS, per_operation_table, sse_table
from perf.results import Collector, Results, Scenario, empty_collector
from perf.scenarios.base import Context, Plan, dump, empty_scenario, k6_binary
from perf.scenarios.queue import queue_scenario
from perf.scenarios.queue_ops import Restart, per_operation, queue_ops_scenario
from perf.scenarios.reservation import reservation_scenario
from perf.scenarios.soak import soak_scenario
from perf.scenarios.spike import spike_scenario
from perf.scenarios.sse import sse_scenario

REPORTS = ROOT / "perf" / "reports"
SCENARIOS = ("queue", "queue-ops", "reservation", "spike", "soak", "sse")
FAUST = ("reservation", "payment", "seat_projection")
OPEN_GATE = {
    "QUEUE_ENTRY_RATE_PER_IP": "0",
    "QUEUE_ENTRY_RATE_PER_USER": "0",
    "QUEUE_ADMIT_PER_S": "100000",
    "QUEUE_ADMIT_CONTROL": "fixed",
    "QUEUE_MAX_ACTIVE": "10000000",
    "QUEUE_ACTIVE_TTL_S": "3600",
    "QUEUE_WAIT_HEARTBEAT_S": "600",
}


def environment(stack: Stack) -> dict[str, object]:
    with open("/proc/meminfo", encoding="ascii") as f:
        mem_kb = int(f.readline().split()[1])
    return {
        "cpu_model": cpu_model(),
        "cores": cores(),
        "memory_gb": round(mem_kb / 2**20, 1),
        "python": python_version(),
        "redis": command_version(["redis-server", "--version"]),
        "broker": (
            f"external ({stack.env['KAFKA_BROKERS']})"
            if os.environ.get("KAFKA_BROKERS")
            else broker_description(stack.env)
        ),
        "k6": command_version([k6_binary(), "version"]),
        "os": command_version(["uname", "-srm"]),
        "faust": package_version("faust-streaming"),
        "aiokafka": package_version("aiokafka"),
    }


def broker_description(env: dict[str, str]) -> str:
    if env.get("KAFKA_BROKER_IMPL", "kafka") == "noida":
        return f"noida-db {package_version('noida-db')}"
    nodes = int(env.get("KAFKA_CLUSTER") or 1)
    return f"Apache Kafka {KAFKA_VERSION} (KRaft, {nodes} node{'s' if nodes > 1 else ''})"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def restart_queue(stack: Stack, port: int, env: dict[str, str], workers: int = 1) -> ServiceProc:
    """The queue again, on the same port, with `env` over the stack's settings."""
    for service in [s for s in stack.services if s.name == "queue"]:
        for proc in service.procs:
            stop(proc)
        stack.services.remove(service)
    return stack.start_service("queue", port=port, workers=workers, extra_env=env)


def soak_extra(results: Results, sc: Scenario) -> None:
    """RSS growth per process between the soak's first and last windows (from the collector)."""
    if not sc["phases"]:
        return
    p = sc["phases"][0]
    start, end = p["started_t"], p["started_t"] + p["duration_s"]
    window = float(sc["extra"].get("window_s", 10.0))  # type: ignore[arg-type]
    c = results["collector"]
    first = [i for i, t in enumerate(c["t"]) if start <= t < start + window]
    last = [i for i, t in enumerate(c["t"]) if end - window <= t <= end]
    if not first or not last:
        return
    growth = {}
    for name, rss in c["rss_mb"].items():
        a = sum(rss[i] for i in first) / len(first)
        b = sum(rss[i] for i in last) / len(last)
        growth[name] = round(b - a, 1)
    sc["extra"]["rss_growth_mb"] = growth


def run_scenario(
    name: str, ctx: Context, plan: Plan, reservation_max: float | None, restart: Restart
) -> Scenario:
    if name == "queue":
        return queue_scenario(ctx, plan)
    if name == "queue-ops":
        return queue_ops_scenario(ctx, plan, restart)
    if name == "reservation":
        return reservation_scenario(ctx, plan)
    if name == "sse":
        return sse_scenario(ctx, plan, restart)
    if name == "spike":
        return spike_scenario(ctx, plan)
    return soak_scenario(ctx, plan, reservation_max)


def run(names: list[str], smoke: bool) -> int:
    plan = Plan.for_run(smoke)
    started = datetime.now(UTC)
    run_id = started.strftime("%Y%m%dT%H%M%SZ")
    if set(names) != set(SCENARIOS):  # a run of some scenarios is named by them
        run_id += "-" + "-".join(names)
    run_id += "-smoke" if smoke else ""
    out = REPORTS / run_id
    out.mkdir(parents=True, exist_ok=True)
    stack = Stack(ROOT / ".run" / f"perf-{run_id}")
    stack.env.setdefault("APP_ENV", "dev")
    results: Results = {
        "run_id": run_id,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": "",
        "complete": False,
        "problems": [],
        "smoke": smoke,
        "environment": {},
        "config": {
            "scenarios": names,
            **plan.__dict__,
            # Settings changed from the services' defaults for this run (the open gate).
            "queue_settings_changed": OPEN_GATE,
        },
        "scenarios": [],
        "collector": empty_collector(),
    }
    previous = signal.signal(signal.SIGTERM, _interrupt)
    t0 = time.monotonic()
    try:
        print(f"perf run {run_id}: starting the stack (logs in {stack.workdir})", flush=True)
        stack.start_infra()
        ports = {name: free_port() for name in (*FAUST, "queue")}
        for name in FAUST:
            stack.start_service(name, port=ports[name])
        stack.start_service("queue", port=ports["queue"], extra_env=OPEN_GATE)
        results["environment"] = environment(stack)
        urls = {s.name: s.url for s in stack.services}
        ctx = Context(
            time.monotonic(),
            time.time(),
            out,
            urls,
            stack.env["ADMIN_TOKEN"],
            stack.env["KAFKA_BROKERS"],
            stack.env["IDENTITY_JWT_SECRET"],
            stack.env["REDIS_URL"],
        )
        t0 = ctx.t0

        def processes() -> dict[str, list[int]]:
            found = {s.name: [p.pid for p in s.procs] for s in stack.services}
            for server in stack.servers:
                found[server.name.split()[0]] = [server.proc.pid]
            found["load-driver"] = [os.getpid()]
            return {**found, **ctx.load_pids}

        sampler = Sampler(
            ctx.t0,
            processes,
            stack.env["REDIS_URL"],
            stack.env["KAFKA_BROKERS"],
            {name: urls[name] for name in FAUST},
            ctx.live.line,
        )
        with sampler:
            results["collector"] = sampler.data  # filled in place: a cut-short run keeps it
            reservation_max: float | None = None
            for name in names:
                print(f"scenario {name}", flush=True)
                if name == "spike":
                    restart_queue(
                        stack,
                        ports["queue"],
                        {
                            **OPEN_GATE,
                            "QUEUE_ACTIVE_TTL_S": "30",  # the default: abandoned slots come back
                            # Polls far back come every 30 s (a third of it): 50,000 fans
                            # polling every 15-20 s would take the queue's whole core.
                            "QUEUE_WAIT_HEARTBEAT_S": "120",
                            "QUEUE_ADMIT_PER_S": str(plan.spike_admit_per_s),
                            # The gate is governed: admission follows the pipeline's health.
                            "QUEUE_ADMIT_CONTROL": "pipeline",
                            "QUEUE_MAX_ACTIVE": str(plan.spike_admit_per_s * 10),
                        },
                    )

                def restart(workers: int, env: dict[str, str]) -> ServiceProc:
                    return restart_queue(stack, ports["queue"], env, workers)

                try:
                    sc = run_scenario(name, ctx, plan, reservation_max, restart)
                except Exception as exc:  # the scenario is reported as failed; the run goes on
                    sc = empty_scenario(name, "requests", "n/a")
                    sc["problems"].append(f"{type(exc).__name__}: {exc}")
                    traceback.print_exc()
                if name in ("spike", "queue-ops", "sse"):
                    restart_queue(stack, ports["queue"], OPEN_GATE)
                if name == "queue-ops":
                    add_per_operation(sc, sampler.data)
                if name == "reservation":
                    reservation_max = sc["max_sustainable_per_s"]
                    add_cpu_per_flow(sc, sampler.data)
                results["scenarios"].append(sc)
        for sc in results["scenarios"]:
            if sc["name"] == "soak":
                soak_extra(results, sc)
        failed = [sc["name"] for sc in results["scenarios"] if not sc["complete"]]
        if failed:
            results["problems"].append(f"scenarios failed: {', '.join(failed)}")
        results["complete"] = not failed
    except KeyboardInterrupt as exc:
        results["problems"].append(
            f"interrupted ({exc or 'Ctrl-C'}) after {time.monotonic() - t0:.0f} s"
        )
    except Exception as exc:
        results["problems"].append(f"run failed: {type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        signal.signal(signal.SIGTERM, previous)
        stack.stop()
        results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        dump(out / "results.json", results)
        print_summary(results)
        write_report(results, out)
    return 0 if results["complete"] else 1


def add_cpu_per_flow(sc: Scenario, collector: Collector) -> None:
    """CPU ms per completed flow of each process (driver apart) in the steady phase (below
    saturation, after warm-up) if the scenario has one, else in its first fixed-rate phase."""
    fixed = [p for p in sc["phases"] if p["kind"] == "fixed"]
    steady = [p for p in fixed if p["name"].startswith("steady")]
    for phase in (steady or fixed)[:1]:
        end = phase["started_t"] + phase["duration_s"]
        completed = phase["requests"] - phase["errors"]
        sc["extra"]["cpu_ms_per_flow"] = cpu_ms_per_flow(
            collector["t"], collector["cpu_pct"], phase["started_t"], end, completed
        )


def add_per_operation(sc: Scenario, collector: Collector) -> None:
    """The queue-ops table, with each saturation phase's CPU per process from the collector."""
    windows = {
        p["name"]: Window(p["started_t"], p["started_t"] + p["duration_s"]) for p in sc["phases"]
    }
    cpu = {
        name: mean_per_key(collector["t"], collector["cpu_pct"], w) for name, w in windows.items()
    }
    sc["extra"]["per_operation"] = per_operation(sc, cpu)


def print_summary(results: Results) -> None:
    """The headline figures on the terminal (the report has everything)."""
    for sc in results["scenarios"]:
        state = "" if sc["complete"] else f"  INCOMPLETE {sc['problems']}"
        print(f"{sc['name']}:{state}")
        for ph in sc["phases"]:
            lat = ph["latency_ms"]
            print(
                f"  {ph['name']:<44} {ph['throughput_per_s']:9.1f} {sc['unit']}/s  "
                f"p50 {lat['p50']:8.1f}  p95 {lat['p95']:8.1f}  p99 {lat['p99']:8.1f} ms  "
                f"errors {ph['errors']}/{ph['requests']}"
            )
        if sc["max_sustainable_per_s"] is not None:
            print(f"  max sustainable {sc['max_sustainable_per_s']:.1f}/s ({sc['criterion']})")
        for key, value in sc["extra"].items():
            if not key.endswith("_samples_s") and key not in NOT_FACTS:
                print(f"  {key}: {value}")
        tables = per_operation_table(sc["extra"].get("per_operation"))
        tables += sse_table(sc["extra"].get("sse"), sc["phases"])
        print("\n".join(f"  {line}" for line in tables))
    events = results["collector"]["events_consumed_per_s"]
    for name, values in events.items():
        if values:
            print(f"events/s consumed by {name}: peak {max(values):.0f}")
    if any(s["name"] in ("queue", "reservation") for s in results["scenarios"]):
        print("\nhot-path goals (issue 10):")
        for row in goal_rows(results):
            print("  " + " | ".join(row))


def write_report(results: Results, out: Path) -> None:
    from perf.report import build_report, latest_chaos

    report = build_report(results, out, latest_chaos())
    ran = results["config"]["scenarios"]
    if isinstance(ran, list) and set(ran) == set(SCENARIOS):  # latest: a run of every one
        latest = REPORTS / ("latest-smoke" if results["smoke"] else "latest")
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(out.name)
    state = "complete" if results["complete"] else "INCOMPLETE: " + "; ".join(results["problems"])
    print(f"report   {report.relative_to(ROOT)} ({state})", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="+", choices=(*SCENARIOS, "all"))
    parser.add_argument("--smoke", action="store_true", help="tiny rates, about half a minute")
    args = parser.parse_args(argv)
    names = list(SCENARIOS) if "all" in args.scenarios else list(dict.fromkeys(args.scenarios))
    return run(names, args.smoke)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
