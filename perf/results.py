"""The shape of a load-test run's `results.json` (written by perf.harness, read by perf.report).

Every number in a report comes from here; nothing is typed in by hand. Times are seconds since
the run started (`t`), latencies milliseconds, rates per second. Series in `timeseries` and
`collector` are sampled once per second and share their `t` list. A run or scenario that failed
or was cut short has `complete: false` and says why in `problems`.
"""

from __future__ import annotations

from typing import TypedDict


class Latency(TypedDict):
    avg: float
    p50: float
    p95: float
    p99: float
    max: float


class Phase(TypedDict):
    """One stretch of steady (or ramping) offered load within a scenario."""

    name: str  # e.g. "target 1000/s", "ramp 200->4000/s"
    kind: str  # "fixed" | "ramp" | "spike" | "soak"
    offered_per_s: float | None  # None for a ramp (see timeseries) or a spike
    started_t: float
    duration_s: float
    requests: int  # requests (queue) or flows (reservation) finished in the phase
    errors: int
    success_rate: float  # 0..1
    throughput_per_s: float  # successful requests or flows per second
    latency_ms: Latency  # from raw samples of this phase (never averaged percentiles)


class Series(TypedDict):
    t: list[float]
    throughput_per_s: list[float]
    p99_ms: list[float | None]  # None where a second had no sample
    errors_per_s: list[float]


class Scenario(TypedDict):
    name: str  # one of perf.harness.SCENARIOS
    unit: str  # "requests" | "flows" | "streams"
    complete: bool
    problems: list[str]
    phases: list[Phase]
    max_sustainable_per_s: float | None  # highest rate meeting `criterion` (ramps only)
    criterion: str  # e.g. "p99 <= 100 ms and errors <= 0.1 %"
    timeseries: Series
    extra: dict[str, object]  # scenario-specific facts (spike: sell-out time, queue waits...)


class Collector(TypedDict):
    t: list[float]
    cpu_pct: dict[str, list[float]]  # process name -> % of one core
    rss_mb: dict[str, list[float]]
    redis: dict[str, list[float]]  # ops_per_s, cpu_pct, used_memory_mb, clients
    consumer_lag: dict[str, list[float]]  # "group/topic" -> end offsets minus committed
    events_consumed_per_s: dict[str, list[float]]  # service -> events/s from its /metrics
    machine_busy_pct: list[float]


class Results(TypedDict):
    run_id: str
    started_at: str
    finished_at: str
    complete: bool
    problems: list[str]
    smoke: bool
    environment: dict[str, object]  # cpu_model, cores, memory_gb, python, redis, broker, k6, os
    config: dict[str, object]
    scenarios: list[Scenario]
    collector: Collector


def empty_collector() -> Collector:
    """A collector record before its first sample."""
    return {
        "t": [],
        "cpu_pct": {},
        "rss_mb": {},
        "redis": {},
        "consumer_lag": {},
        "events_consumed_per_s": {},
        "machine_busy_pct": [],
    }
