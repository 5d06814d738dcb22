"""Pure parsing of the JSON summary that perf/k6/queue.js's handleSummary writes (no I/O)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

SCENARIO = "measure"


@dataclass(frozen=True)
class RunStats:
    """One k6 run's measured scenario: counts, throughput and latency in milliseconds."""

    requests: int
    failed: int
    window_s: float
    throughput_rps: float
    error_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    dropped_iterations: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


class SummaryError(ValueError):
    """The summary lacks what the benchmark needs (wrong script, or k6 changed its format)."""


def _values(metrics: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    metric = metrics.get(name)
    if not isinstance(metric, Mapping):
        return None
    values = metric.get("values")
    return values if isinstance(values, Mapping) else None


def _number(values: Mapping[str, Any] | None, key: str, default: float = math.nan) -> float:
    if values is None:
        return default
    value = values.get(key)
    return float(value) if isinstance(value, int | float) else default


def parse_summary(doc: Mapping[str, Any], scenario: str = SCENARIO) -> RunStats:
    """Throughput, latency percentiles and error rate of `scenario`'s requests only.

    `doc` is {"bench": {"window_ms": ...}, "metrics": <k6 handleSummary metrics>}. Throughput is
    requests over the measured window (setup excluded), not k6's own `rate`, which divides by
    the whole test run including setup. Latency is k6's http_req_duration: sending + waiting +
    receiving, connection set-up excluded (connections are kept alive anyway).
    """
    metrics = doc.get("metrics")
    bench = doc.get("bench")
    if not isinstance(metrics, Mapping) or not isinstance(bench, Mapping):
        raise SummaryError("summary needs `metrics` and `bench` objects")
    tag = f"{{scenario:{scenario}}}"
    reqs = _values(metrics, f"http_reqs{tag}")
    duration = _values(metrics, f"http_req_duration{tag}")
    failed = _values(metrics, f"http_req_failed{tag}")
    if reqs is None or duration is None or failed is None:
        raise SummaryError(f"summary lacks the {tag} sub-metrics (are the thresholds defined?)")
    window_ms = bench.get("window_ms")
    if not isinstance(window_ms, int | float) or window_ms <= 0:
        raise SummaryError("summary lacks a positive bench.window_ms")
    window_s = float(window_ms) / 1000
    requests = int(_number(reqs, "count", 0))
    # http_req_failed is a Rate: `passes` counts the failed requests (value 1), `fails` the rest.
    n_failed = int(_number(failed, "passes", 0))
    dropped = int(_number(_values(metrics, f"dropped_iterations{tag}"), "count", 0))
    return RunStats(
        requests=requests,
        failed=n_failed,
        window_s=window_s,
        throughput_rps=requests / window_s,
        error_rate=n_failed / requests if requests else math.nan,
        p50_ms=_number(duration, "p(50)"),
        p95_ms=_number(duration, "p(95)"),
        p99_ms=_number(duration, "p(99)"),
        max_ms=_number(duration, "max"),
        dropped_iterations=dropped,
    )


def measured_window(doc: Mapping[str, Any]) -> tuple[float, float]:
    """The measured scenario's (start, end) as Unix seconds, from handleSummary's clock."""
    bench = doc.get("bench")
    start = bench.get("start_ms") if isinstance(bench, Mapping) else None
    end = bench.get("end_ms") if isinstance(bench, Mapping) else None
    if not isinstance(start, int | float) or not isinstance(end, int | float) or end <= start:
        raise SummaryError("summary lacks bench.start_ms < bench.end_ms")
    return float(start) / 1000, float(end) / 1000
