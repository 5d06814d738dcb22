"""Idle cost: the stack started and left alone; CPU of each process in % of one core.

`python -m perf.idle [SECONDS]` (`make perf-idle`) starts the same stack as the harness (the
broker chosen by KAFKA_BROKER_IMPL, KAFKA_CLUSTER nodes), lets it settle, samples for SECONDS
(default 20), prints a table and writes perf/reports/idle-<broker>[-<nodes>].json, with how long
Redis and the brokers took to be ready and the memory (RSS) of every process. The goal for a
Faust worker is under 2 %.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime

from infra.processes import free_port
from infra.stack import ROOT, Stack
from perf.collector import rss_mb
from perf.harness import broker_description
from perf.machine import process_cpu_s

SETTLE_S = 10.0
GOAL_PCT = 2.0


def measure(seconds: float) -> dict[str, object]:
    stack = Stack(ROOT / ".run" / f"idle-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
    stack.env.setdefault("APP_ENV", "dev")
    try:
        started = time.monotonic()
        stack.start_infra()
        infra_ready_s = time.monotonic() - started
        for name in ("reservation", "payment", "seat_projection", "queue"):
            stack.start_service(name, port=free_port())
        pids = {s.name: [p.pid for p in s.procs] for s in stack.services}
        for server in stack.servers:
            pids[server.name] = [server.proc.pid]
        time.sleep(SETTLE_S)
        before = {n: sum(process_cpu_s(p) for p in ps) for n, ps in pids.items()}
        started = time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - started
        after = {n: sum(process_cpu_s(p) for p in ps) for n, ps in pids.items()}
        return {
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "broker": broker_description(stack.env),
            "redis_and_brokers_ready_s": round(infra_ready_s, 1),
            "seconds": round(wall, 1),
            "cpu_pct_of_one_core": {n: round((after[n] - before[n]) / wall * 100, 2) for n in pids},
            "rss_mb": {n: round(sum(rss_mb(p) for p in ps)) for n, ps in pids.items()},
        }
    finally:
        stack.stop()


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    result = measure(seconds)
    cpu = result["cpu_pct_of_one_core"]
    assert isinstance(cpu, dict)
    rss = result["rss_mb"]
    assert isinstance(rss, dict)
    print(f"{result['broker']}: Redis and brokers ready in {result['redis_and_brokers_ready_s']} s")
    print(f"idle over {result['seconds']} s: CPU in % of one core, RSS in MB")
    for name, pct in cpu.items():
        faust = name in ("reservation", "payment", "seat_projection")
        verdict = ("meets" if pct < GOAL_PCT else "misses") + f" the {GOAL_PCT:g} % goal"
        print(f"  {name:<18}{pct:>7.2f} {rss[name]:>6}  {verdict if faust else ''}")
    broker = os.environ.get("KAFKA_BROKER_IMPL") or "kafka"
    nodes = os.environ.get("KAFKA_CLUSTER") or "1"
    suffix = "" if nodes == "1" else f"-{nodes}"
    out = ROOT / "perf" / "reports" / f"idle-{broker}{suffix}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
