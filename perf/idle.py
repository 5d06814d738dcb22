"""Idle cost: the stack started and left alone; CPU of each process in % of one core.

`python -m perf.idle [SECONDS]` (`make perf-idle`) starts the same stack as the harness (the
broker chosen by KAFKA_BROKER_IMPL), lets it settle, samples for SECONDS (default 20), prints a
table and writes perf/reports/idle-<broker>.json. The goal for a Faust worker is under 2 %.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime

from infra.processes import free_port
from infra.stack import ROOT, Stack
from perf.harness import broker_description
from perf.machine import process_cpu_s

SETTLE_S = 10.0
GOAL_PCT = 2.0


def measure(seconds: float) -> dict[str, object]:
    stack = Stack(ROOT / ".run" / f"idle-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
    stack.env.setdefault("APP_ENV", "dev")
    try:
        stack.start_infra()
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
            "seconds": round(wall, 1),
            "cpu_pct_of_one_core": {n: round((after[n] - before[n]) / wall * 100, 2) for n in pids},
        }
    finally:
        stack.stop()


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    result = measure(seconds)
    cpu = result["cpu_pct_of_one_core"]
    assert isinstance(cpu, dict)
    print(f"idle CPU over {result['seconds']} s, {result['broker']} (% of one core):")
    for name, pct in cpu.items():
        faust = name in ("reservation", "payment", "seat_projection")
        verdict = ("meets" if pct < GOAL_PCT else "misses") + f" the {GOAL_PCT:g} % goal"
        print(f"  {name:<18}{pct:>7.2f}  {verdict if faust else ''}")
    broker = os.environ.get("KAFKA_BROKER_IMPL") or "kafka"
    out = ROOT / "perf" / "reports" / f"idle-{broker}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
