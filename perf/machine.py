"""Machine facts and CPU accounting for the benchmarks (Linux /proc; imported, not run)."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cores() -> dict[str, int]:
    """Logical CPUs in the machine, and those this process may run on."""
    return {"logical": os.cpu_count() or 0, "usable": len(os.sched_getaffinity(0))}


def command_version(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def python_version() -> str:
    return f"{platform.python_implementation()} {sys.version.split()[0]}"


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine since boot, in clock ticks."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass(frozen=True)
class CpuUse:
    """CPU used during one window: per process group in % of one core (200 = two cores busy),
    and the whole machine's busy share in % of all its CPUs."""

    wall_s: float
    by_group: dict[str, float]
    machine_busy_pct: float


@dataclass(frozen=True)
class _Sample:
    at: float  # time.time(), comparable with k6's Date.now() / 1000
    cpu: dict[str, float]
    busy: int
    total: int


class CpuSampler:
    """Sample process groups' CPU in a background thread; `usage` answers for any window."""

    def __init__(self, groups: Mapping[str, Sequence[int]], *, interval_s: float = 0.2) -> None:
        self.groups = {name: list(pids) for name, pids in groups.items()}
        self.interval_s = interval_s
        self.samples: list[_Sample] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)

    def _sample(self) -> _Sample:
        cpu = {g: sum(process_cpu_s(p) for p in pids) for g, pids in self.groups.items()}
        busy, total = machine_jiffies()
        return _Sample(time.time(), cpu, busy, total)

    def _loop(self) -> None:
        while True:
            self.samples.append(self._sample())
            if self._done.wait(self.interval_s):
                return

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def usage(self, start: float, end: float) -> CpuUse:
        """Between the first sample at or after `start` and the last at or before `end` (the
        whole sampled span when the window holds fewer than two samples)."""
        inside = [s for s in self.samples if start <= s.at <= end]
        if len(inside) < 2:
            inside = self.samples
        if len(inside) < 2:
            return CpuUse(0.0, {g: math.nan for g in self.groups}, math.nan)
        first, last = inside[0], inside[-1]
        wall = last.at - first.at
        d_busy, d_total = last.busy - first.busy, last.total - first.total
        return CpuUse(
            wall_s=wall,
            by_group={g: 100 * (last.cpu[g] - first.cpu[g]) / wall for g in self.groups},
            machine_busy_pct=100 * d_busy / d_total if d_total > 0 else math.nan,
        )
