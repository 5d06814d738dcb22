"""What the report computes from a run's results: measurement windows, series statistics,
saturation, and the rows of the comparison with the reference report."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from perf.reference import reference
from perf.report.formatting import (
    NA,
    fmt_cores,
    fmt_ms,
    fmt_plain,
    fmt_rate,
    fmt_success,
    fmt_value,
    number,
)
from perf.results import Phase, Results, Scenario

TARGET_TOLERANCE = 0.99  # a throughput target counts as met at 99 % of it or more


@dataclass(frozen=True)
class Window:
    """A span of run seconds, start included, end excluded (the next scenario's first second)."""

    start: float
    end: float

    def covers(self, t: float) -> bool:
        return self.start <= t < self.end


def window_of(scenario: Scenario) -> Window | None:
    """From the scenario's first phase start to its last phase end; None without phases."""
    spans = [(p["started_t"], p["started_t"] + p["duration_s"]) for p in scenario["phases"]]
    spans = [(s, e) for s, e in spans if number(s) is not None and number(e) is not None]
    if not spans:
        return None
    return Window(min(s for s, _ in spans), max(e for _, e in spans))


def values_in(t: Sequence[float], values: Sequence[object], window: Window | None) -> list[float]:
    """The finite values sampled inside `window` (none without a window)."""
    if window is None:
        return []
    picked = (number(v) for ts, v in zip(t, values, strict=False) if window.covers(ts))
    return [v for v in picked if v is not None]


def mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def peak(values: Sequence[float]) -> float | None:
    return max(values) if values else None


def mean_per_key(
    t: Sequence[float], series: Mapping[str, Sequence[object]], window: Window | None
) -> dict[str, float]:
    means = {k: mean(values_in(t, v, window)) for k, v in series.items()}
    return {k: m for k, m in means.items() if m is not None}


def busiest(cpu: Mapping[str, float]) -> tuple[str, float] | None:
    return max(cpu.items(), key=lambda item: item[1]) if cpu else None


def find_scenario(results: Results, name: str) -> Scenario | None:
    return next((s for s in results["scenarios"] if s["name"] == name), None)


def closest_phase(scenario: Scenario | None, rate: float) -> Phase | None:
    """The phase whose offered rate is closest to `rate` (ramps and spikes offer none)."""
    best: tuple[float, Phase] | None = None
    for phase in scenario["phases"] if scenario else []:
        offer = number(phase["offered_per_s"])
        if offer is not None and (best is None or abs(offer - rate) < best[0]):
            best = (abs(offer - rate), phase)
    return None if best is None else best[1]


def is_incomplete(results: Results) -> bool:
    return not results["complete"] or any(not s["complete"] for s in results["scenarios"])


@dataclass(frozen=True)
class Row:
    """One line of the comparison: the reference's number against ours."""

    label: str
    reference: float
    ours: float | None
    show: Callable[[object], str]
    kind: str  # "target" (a rate to reach) | "higher" (higher is better) | "lower"
    partial: bool  # ours comes from an incomplete scenario

    @property
    def verdict(self) -> str:
        if self.ours is None:
            return "not measured"
        if self.kind == "target":
            return "met" if self.ours >= self.reference * TARGET_TOLERANCE else "not met"
        if self.ours == self.reference:
            return "matches"
        better = self.ours > self.reference if self.kind == "higher" else self.ours < self.reference
        return "beats" if better else "falls short"

    @property
    def ours_text(self) -> str:
        shown = self.show(self.ours)
        return f"{shown} (partial)" if self.partial and self.ours is not None else shown


def throughput(phase: Phase | None) -> float | None:
    return None if phase is None else number(phase["throughput_per_s"])


def avg_latency(phase: Phase | None) -> float | None:
    return None if phase is None else number(phase["latency_ms"].get("avg"))


def success_pct(phase: Phase | None) -> float | None:
    ratio = None if phase is None else number(phase["success_rate"])
    return None if ratio is None else ratio * 100


def fmt_success_pct(pct: object) -> str:
    value = number(pct)
    return fmt_success(None if value is None else value / 100)


def is_partial(scenario: Scenario | None) -> bool:
    return scenario is not None and not scenario["complete"]


def consumer_peak(results: Results, scenario: Scenario | None) -> float | None:
    """Peak events/s of the reservation service while `scenario` ran."""
    events = results["collector"]["events_consumed_per_s"]
    keys = sorted(events, key=lambda k: k != "reservation")  # the exact name first
    key = next((k for k in keys if k.startswith("reservation")), None)
    if scenario is None or key is None:
        return None
    return peak(values_in(results["collector"]["t"], events[key], window_of(scenario)))


def per(value: float | None, divisor: float) -> float | None:
    return None if value is None else value / divisor


TARGETS = reference().targets


def row(key: str, ours: float | None, show: Callable[[object], str], partial: bool) -> Row:
    """Ours against the reference report's `key` target (perf/reference.toml)."""
    t = TARGETS[key]
    return Row(t.label, t.value, ours, show, t.better, partial)


def queue_rows(results: Results) -> list[Row]:
    """The reference counts tokens; our queue phases count HTTP requests, `requests_per_token`
    of them per token (enter, poll, validate), so rates are divided back into tokens."""
    s = find_scenario(results, "queue")
    per_token = (number(s["extra"].get("requests_per_token")) if s else None) or 1.0
    p, part = closest_phase(s, TARGETS["queue_tokens_per_s"].value * per_token), is_partial(s)
    top = number(s["max_sustainable_per_s"]) if s else None
    return [
        row("queue_tokens_per_s", per(throughput(p), per_token), fmt_rate, part),
        row("queue_max_tokens_per_s", per(top, per_token), fmt_rate, part),
        row("queue_avg_latency_ms", avg_latency(p), fmt_ms, part),
        row("queue_success_pct", success_pct(p), fmt_success_pct, part),
    ]


def reservation_rows(results: Results) -> list[Row]:
    s = find_scenario(results, "reservation")
    p, part = closest_phase(s, TARGETS["reservation_flows_per_s"].value), is_partial(s)
    consumed = consumer_peak(results, s)
    return [
        row("reservation_flows_per_s", throughput(p), fmt_rate, part),
        row("consumer_events_per_s", consumed, fmt_rate, part),
        row("reservation_avg_latency_ms", avg_latency(p), fmt_ms, part),
        row("reservation_success_pct", success_pct(p), fmt_success_pct, part),
    ]


def our_hardware(results: Results) -> str:
    env = results["environment"]
    return (
        f"one machine ({fmt_value(env.get('cpu_model', NA))}, {fmt_cores(env.get('cores', NA))} "
        f"cores, {fmt_plain(env.get('memory_gb'), ' GB')}) running a single Redis "
        f"({fmt_value(env.get('redis', NA))}), one broker ({fmt_value(env.get('broker', NA))}), "
        "every service and the load generator"
    )
