"""Raw latency samples and what is computed from them: phases, per-second series, the max rate.

Every percentile is computed from the raw samples of its window (never from averaged
percentiles). Samples come from k6's CSV output (`k6 run --out csv=...`) or from the Python
flow drivers of perf.scenarios.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from perf.results import Latency, Phase, Series
from perf.stats import percentile


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # when the request (or flow) finished, seconds since the run started
    ms: float
    ok: bool


def read_k6_csv(path: Path, t0_unix: float, scenario: str = "measure") -> list[Sample]:
    """`http_req_duration` rows of one k6 scenario; a row is ok when k6 expected its status.

    Run k6 with K6_CSV_TIME_FORMAT=unix_milli so timestamps have millisecond resolution.
    """
    samples = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["metric_name"] != "http_req_duration" or row.get("scenario") != scenario:
                continue
            stamp = float(row["timestamp"])
            unix_s = stamp / 1000 if stamp > 1e11 else stamp
            ok = row.get("expected_response", "true") == "true"
            samples.append(Sample(unix_s - t0_unix, float(row["metric_value"]), ok))
    samples.sort(key=lambda s: s.t)
    return samples


def latency(samples: Sequence[Sample]) -> Latency:
    ms = [s.ms for s in samples]
    return {
        "avg": sum(ms) / len(ms) if ms else math.nan,
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "max": max(ms, default=math.nan),
    }


def phase(
    name: str,
    kind: str,
    samples: Sequence[Sample],
    *,
    started_t: float,
    duration_s: float,
    offered_per_s: float | None,
) -> Phase:
    inside = [s for s in samples if started_t <= s.t < started_t + duration_s]
    errors = sum(not s.ok for s in inside)
    return {
        "name": name,
        "kind": kind,
        "offered_per_s": offered_per_s,
        "started_t": round(started_t, 3),
        "duration_s": round(duration_s, 3),
        "requests": len(inside),
        "errors": errors,
        "success_rate": (len(inside) - errors) / len(inside) if inside else math.nan,
        "throughput_per_s": (len(inside) - errors) / duration_s if duration_s > 0 else math.nan,
        "latency_ms": latency([s for s in inside if s.ok] or inside),
    }


def series(samples: Iterable[Sample], start: float, end: float) -> Series:
    """Per-second throughput (ok samples), p99 and errors from `start` to `end`."""
    first, last = math.floor(start), math.ceil(end)
    n = max(0, last - first)
    buckets: list[list[Sample]] = [[] for _ in range(n)]
    for s in samples:
        i = math.floor(s.t) - first
        if 0 <= i < n:
            buckets[i].append(s)
    return {
        "t": [float(first + i) for i in range(n)],
        "throughput_per_s": [float(sum(s.ok for s in b)) for b in buckets],
        "p99_ms": [percentile([s.ms for s in b], 99) if b else None for b in buckets],
        "errors_per_s": [float(sum(not s.ok for s in b)) for b in buckets],
    }


def max_sustainable(
    samples: Sequence[Sample],
    start: float,
    end: float,
    *,
    p99_limit_ms: float,
    error_limit: float,
    window_s: float = 5.0,
) -> float | None:
    """Highest successful throughput of any `window_s` window whose p99 and error rate are within
    the limits (the ramp's sustainable maximum); None if no window qualifies."""
    best: float | None = None
    t = start
    while t + window_s <= end + 1e-9:
        inside = [s for s in samples if t <= s.t < t + window_s]
        if inside:
            errors = sum(not s.ok for s in inside) / len(inside)
            p99 = percentile([s.ms for s in inside], 99)
            rate = sum(s.ok for s in inside) / window_s
            if p99 <= p99_limit_ms and errors <= error_limit and (best is None or rate > best):
                best = rate
        t += window_s
    return best
