"""Build report.md and its plots from a run's results: python -m perf.report path/to/results.json"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a display

from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from perf.chaos.report import failure_section
from perf.goals import goal_table
from perf.results import Collector, Phase, Results, Scenario
from perf.stats import percentile

NA = "n/a"
SATURATED_PROCESS_PCT = 90.0  # mean % of one core
SATURATED_MACHINE_PCT = 95.0  # mean % of the whole machine busy
LATENCY_GROWTH_FACTOR = 2.0  # p99 above this times its scenario median counts as growth
LOOKBACK_S = 5.0  # how far before the growth to look for the busiest process
TARGET_TOLERANCE = 0.99  # a throughput target counts as met at 99 % of it or more
WAIT_SAMPLES_KEY = "queue_wait_samples_s"
UNIT_SUFFIXES = (("_per_s", "/s"), ("_ms", " ms"), ("_pct", " %"), ("_mb", " MB"), ("_s", " s"))

PURPOSES = (
    "Queue token management: how fast tokens are issued and validated with Redis.",
    "Seat reservation and payment: how fast the event-driven Kafka pipeline processes flows.",
    "Find the bottlenecks under load.",
    "Assess scalability for future traffic growth.",
)
SYSTEMS = (
    "Waiting room (`services/queue/`): Redis holds the line, issues and validates queue tokens "
    "and expires them; an aiohttp API in front.",
    "Reservation and seat confirmation (`services/reservation/`): Faust worker whose seat agent "
    "is the only writer of seat state (seat-keyed Kafka topics): it holds, confirms on payment "
    "and releases seats; plus the hold sweeper and the reservation HTTP API.",
    "Payment (`services/payment/`): Faust worker charging through the gateway port and "
    "publishing completed, failed and refunded payments.",
    "Seat map (`services/seat_projection/`): Faust worker folding seat facts into the read "
    "model behind the seat-map API.",
)
REFERENCE_HARDWARE = (
    "two application servers with 4 cores and 8 GB RAM each, a 3-node Redis cluster and 3 Kafka "
    "brokers (replication factor 2)"
)


# ---------------------------------------------------------------- formatting


def number(x: object) -> float | None:
    """A finite float, or None for None, NaN, infinities and anything not a number."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    value = float(x)
    return value if math.isfinite(value) else None


def fmt(x: object, decimals: int = 1, suffix: str = "") -> str:
    value = number(x)
    return NA if value is None else f"{value:,.{decimals}f}{suffix}"


def fmt_rate(x: object) -> str:
    return fmt(x, 1, "/s")


def fmt_ms(x: object) -> str:
    return fmt(x, 1, " ms")


def fmt_cpu(x: object) -> str:
    return fmt(x, 1, " %")


def fmt_success(ratio: object) -> str:
    """A 0..1 ratio as a percentage that never rounds a failure up to 100 %."""
    value = number(ratio)
    if value is None:
        return NA
    pct = value * 100
    if pct < 100 and round(pct, 2) >= 100:
        return ">99.99 %"
    return f"{pct:,.2f} %"


def fmt_plain(x: object, suffix: str = "") -> str:
    """Whole numbers without decimals, others with up to three."""
    value = number(x)
    if value is None:
        return NA
    text = f"{value:,.0f}" if value.is_integer() else f"{value:,.3f}".rstrip("0").rstrip(".")
    return text + suffix


def unit_of(key: str) -> str:
    return next((unit for end, unit in UNIT_SUFFIXES if key.endswith(end)), "")


def fmt_value(value: object, unit: str = "") -> str:
    """Any JSON value from `extra`, `environment` or `config`, briefly."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or isinstance(value, int | float):
        return fmt_plain(value, unit)
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {fmt_value(v, unit)}" for k, v in value.items()) or "(none)"
    if isinstance(value, list):
        return fmt_list(value, unit)
    return str(value)


def fmt_list(values: list[object], unit: str) -> str:
    numbers = [v for v in (number(x) for x in values) if v is not None]
    if len(values) > 6 and len(numbers) == len(values):
        low, mid, high = min(numbers), percentile(numbers, 50), max(numbers)
        return (
            f"{len(values):,} values (min {fmt_plain(low, unit)}, median "
            f"{fmt_plain(mid, unit)}, max {fmt_plain(high, unit)})"
        )
    return ", ".join(fmt_value(v, unit) for v in values) or "(none)"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "scenario"


# ---------------------------------------------------------------- windows and series


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


# ---------------------------------------------------------------- plots


def gap_if_missing(x: object) -> float:
    value = number(x)
    return math.nan if value is None else value


def aligned(t: Sequence[float], values: Sequence[object]) -> tuple[list[float], list[float]]:
    """Both lists cut to the same length, missing values as NaN (a gap in the line)."""
    pairs = list(zip(t, values, strict=False))
    return [x for x, _ in pairs], [gap_if_missing(v) for _, v in pairs]


def save(fig: Figure, path: Path) -> None:
    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def shade_windows(ax: Axes, windows: Mapping[str, Window | None]) -> None:
    for name, w in windows.items():
        if w is not None:
            ax.axvspan(w.start, w.end, color="grey", alpha=0.08)
            ax.text(w.start, 1.0, name, transform=ax.get_xaxis_transform(), fontsize=7, va="top")


def has_data(series: Mapping[str, Sequence[object]]) -> bool:
    return any(number(v) is not None for values in series.values() for v in values)


def plot_lines(
    path: Path,
    title: str,
    ylabel: str,
    t: Sequence[float],
    series: Mapping[str, Sequence[object]],
    windows: Mapping[str, Window | None],
) -> bool:
    """One line per series over run time, scenario windows shaded; False when nothing to draw."""
    if not t or not has_data(series):
        return False
    fig, ax = plt.subplots(figsize=(9, 3.8), layout="constrained")
    for name, values in series.items():
        ax.plot(*aligned(t, values), label=name, linewidth=1.2)
    shade_windows(ax, windows)
    ax.set(title=title, xlabel="run time (s)", ylabel=ylabel)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    save(fig, path)
    return True


def plot_throughput(path: Path, scenario: Scenario) -> bool:
    """Throughput and p99 latency of one scenario per second, on twin axes."""
    ts = scenario["timeseries"]
    if not ts["t"] or not has_data({"a": ts["throughput_per_s"], "b": ts["p99_ms"]}):
        return False
    fig, ax = plt.subplots(figsize=(9, 3.8), layout="constrained")
    ax.plot(*aligned(ts["t"], ts["throughput_per_s"]), color="tab:blue", label="throughput")
    ax.set(title=f"{scenario['name']}: throughput and p99", xlabel="run time (s)")
    ax.set_ylabel(f"{scenario['unit']}/s", color="tab:blue")
    twin = ax.twinx()
    twin.plot(*aligned(ts["t"], ts["p99_ms"]), color="tab:red", label="p99")
    twin.set_ylabel("p99 latency (ms)", color="tab:red")
    save(fig, path)
    return True


def plot_waits(path: Path, scenario: Scenario) -> bool:
    raw = scenario["extra"].get(WAIT_SAMPLES_KEY)
    waits = [v for v in (number(x) for x in raw) if v is not None] if isinstance(raw, list) else []
    if not waits:
        return False
    fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    ax.hist(waits, bins=min(50, max(5, len(waits) // 10)), color="tab:purple")
    ax.set(title=f"{scenario['name']}: time in the queue", xlabel="wait (s)", ylabel="fans")
    save(fig, path)
    return True


Draw = Callable[[Path], bool]


def make_plots(results: Results, out_dir: Path) -> dict[str, str]:
    """Draws every plot that has data; returns plot key -> file name (relative to out_dir)."""
    c = results["collector"]
    windows = {s["name"]: window_of(s) for s in results["scenarios"]}

    def over_run(title: str, ylabel: str, series: Mapping[str, Sequence[object]]) -> Draw:
        return lambda path: plot_lines(path, title, ylabel, c["t"], series, windows)

    redis_ops = {"ops/s": c["redis"].get("ops_per_s", [])}
    jobs: dict[str, tuple[str, Draw]] = {
        "cpu": ("cpu.png", over_run("CPU per process", "% of one core", c["cpu_pct"])),
        "lag": ("consumer-lag.png", over_run("Consumer lag", "messages", c["consumer_lag"])),
        "redis": ("redis-ops.png", over_run("Redis commands", "ops/s", redis_ops)),
    }
    for i, s in enumerate(results["scenarios"], start=1):
        name = f"{i}-{slug(s['name'])}"
        jobs[f"throughput:{i}"] = (f"throughput-{name}.png", partial(plot_throughput, scenario=s))
        jobs[f"waits:{i}"] = (f"queue-wait-{name}.png", partial(plot_waits, scenario=s))
    return {key: file for key, (file, draw) in jobs.items() if draw(out_dir / file)}


def image(plots: Mapping[str, str], key: str, alt: str) -> list[str]:
    return [f"![{alt}]({plots[key]})", ""] if key in plots else []


# ---------------------------------------------------------------- sections


def header(results: Results) -> list[str]:
    lines = [
        f"# Load-test report: run {results['run_id']}",
        "",
        f"Started {results['started_at']}, finished {results['finished_at']}. Every number below "
        "comes from this run's results.json.",
        "",
    ]
    if is_incomplete(results):
        lines += [f"> **INCOMPLETE RUN:** {'; '.join(all_problems(results)) or 'no reason given'}"]
        lines += ["> Numbers of incomplete scenarios are partial.", ""]
    elif results["problems"]:
        lines += [f"Problems noted: {'; '.join(results['problems'])}", ""]
    if results["smoke"]:
        lines += ["> **SMOKE RUN:** short phases to check the harness; not a measurement.", ""]
    return lines


def all_problems(results: Results) -> list[str]:
    problems = list(results["problems"])
    for s in results["scenarios"]:
        if not s["complete"]:
            problems.append(f"{s['name']}: {'; '.join(s['problems']) or 'incomplete'}")
    return problems


def section_purpose() -> list[str]:
    return ["## 1. Purpose", ""] + [f"{i}. {p}" for i, p in enumerate(PURPOSES, 1)] + [""]


def section_systems(results: Results) -> list[str]:
    broker = fmt_value(results["environment"].get("broker", NA))
    redis = fmt_value(results["environment"].get("redis", NA))
    return [
        "## 2. Systems under test",
        "",
        f"A waiting room in Redis ({redis}) in front of an event-sourced reservation, payment and "
        f"seat-confirmation pipeline on Faust over a Kafka-protocol broker ({broker}).",
        "",
        *(f"- {line}" for line in SYSTEMS),
        "",
    ]


def offered(phase: Phase) -> str:
    if number(phase["offered_per_s"]) is not None:
        return fmt_rate(phase["offered_per_s"])
    return f"varies ({phase['kind']})"


def section_plan(results: Results) -> list[str]:
    lines = ["## 3. Plan", ""]
    for s in results["scenarios"]:
        rows = [
            [p["name"], p["kind"], offered(p), fmt_plain(p["duration_s"], " s")]
            for p in s["phases"]
        ]
        lines += [f"### {s['name']}", ""]
        lines += table(["phase", "kind", "offered load", "duration"], rows) if rows else []
        lines += ["", f"Criterion: {s['criterion'] or NA}.", ""]
    return lines


def fmt_cores(value: object) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{fmt_value(v)} {k}" for k, v in value.items())
    return fmt_value(value)


def section_environment(results: Results) -> list[str]:
    env = results["environment"]
    known = {
        "cpu_model": ("CPU", fmt_value),
        "cores": ("Cores", fmt_cores),
        "memory_gb": ("Memory", lambda v: fmt_plain(v, " GB")),
        "python": ("Python", fmt_value),
        "redis": ("Redis", fmt_value),
        "broker": ("Broker", fmt_value),
        "k6": ("k6", fmt_value),
        "os": ("OS", fmt_value),
    }
    lines = ["## 4. Environment", "", "Measured on the machine that ran the test:", ""]
    for key, (label, show) in known.items():
        lines.append(f"- {label}: {show(env[key]) if key in env else NA}")
    lines += [f"- {k}: {fmt_value(v)}" for k, v in env.items() if k not in known]
    config = [f"- {k}: {fmt_value(v, unit_of(k))}" for k, v in results["config"].items()]
    return [*lines, "", "Configuration:", "", *(config or ["- (none)"]), ""]


def phase_row(phase: Phase) -> list[str]:
    lat = phase["latency_ms"]
    return [
        phase["name"],
        fmt_plain(phase["requests"]),
        fmt_plain(phase["errors"]),
        fmt_success(phase["success_rate"]),
        fmt_rate(phase["throughput_per_s"]),
        *(fmt_ms(lat.get(k)) for k in ("avg", "p50", "p95", "p99", "max")),
    ]


def sustainable(scenario: Scenario) -> str:
    rate = number(scenario["max_sustainable_per_s"])
    if rate is not None:
        return f"{fmt_rate(rate)} (criterion: {scenario['criterion'] or NA})"
    if any(p["kind"] == "ramp" for p in scenario["phases"]):
        return f"not reached (criterion: {scenario['criterion'] or NA})"
    return "not measured (no ramp in this scenario)"


def mean_and_peak(values: Sequence[float], fmt_one: Callable[[object], str]) -> str:
    return f"mean {fmt_one(mean(values))}, peak {fmt_one(peak(values))}"


def redis_lines(c: Collector, window: Window | None) -> list[str]:
    cpu = values_in(c["t"], c["redis"].get("cpu_pct", []), window)
    ops = values_in(c["t"], c["redis"].get("ops_per_s", []), window)
    return [
        f"- Redis CPU: {mean_and_peak(cpu, fmt_cpu)} (of one core)",
        f"- Redis commands: {mean_and_peak(ops, fmt_rate)}",
    ]


def consumer_lines(c: Collector, window: Window | None) -> list[str]:
    events = c["events_consumed_per_s"].items()
    lines = [
        f"- Consumer throughput, {name}: {mean_and_peak(values_in(c['t'], v, window), fmt_rate)}"
        for name, v in events
    ]
    lines += [
        f"- Consumer lag, {name}: peak {fmt_plain(peak(values_in(c['t'], v, window)))} messages"
        for name, v in c["consumer_lag"].items()
    ]
    return lines or ["- Consumers: no consumer metrics were collected"]


def scenario_title(scenario: Scenario) -> str:
    if scenario["complete"]:
        return f"### {scenario['name']}"
    return f"### {scenario['name']} (PARTIAL: {'; '.join(scenario['problems']) or 'incomplete'})"


def scenario_results(s: Scenario, c: Collector, plots: Mapping[str, str], i: int) -> list[str]:
    window = window_of(s)
    header_row = ["phase", s["unit"], "errors", "success", "throughput"]
    header_row += ["avg", "p50", "p95", "p99", "max"]
    lines = [scenario_title(s), ""]
    lines += table(header_row, [phase_row(p) for p in s["phases"]]) if s["phases"] else []
    lines += ["", f"- Max sustained throughput: {sustainable(s)}"]
    lines += redis_lines(c, window) + consumer_lines(c, window)
    extras = [f"  - {k}: {fmt_value(v, unit_of(k))}" for k, v in s["extra"].items()]
    lines += (["- Facts:", *extras] if extras else []) + [""]
    lines += image(plots, f"throughput:{i}", f"{s['name']} throughput and p99")
    return lines + image(plots, f"waits:{i}", f"{s['name']} queue wait distribution")


def section_results(results: Results, plots: Mapping[str, str]) -> list[str]:
    lines = ["## 5. Results", ""]
    for i, s in enumerate(results["scenarios"], start=1):
        lines += scenario_results(s, results["collector"], plots, i)
    return lines


def saturation(cpu: Mapping[str, float], machine: float | None) -> str:
    top = busiest(cpu)
    if top is None:
        return "Process CPU: not enough data."
    name, pct = top
    if pct >= SATURATED_PROCESS_PCT:
        limit = fmt_cpu(SATURATED_PROCESS_PCT)
        return f"**{name}** saturated: mean {fmt_cpu(pct)} of one core (threshold {limit})."
    if machine is not None and machine >= SATURATED_MACHINE_PCT:
        return (
            f"The machine saturated (mean {fmt_cpu(machine)} busy); the busiest process was "
            f"**{name}** at {fmt_cpu(pct)} of one core."
        )
    return (
        f"Busiest process: **{name}** at a mean {fmt_cpu(pct)} of one core; below the saturation "
        f"thresholds ({fmt_cpu(SATURATED_PROCESS_PCT)} of a core, machine "
        f"{fmt_cpu(SATURATED_MACHINE_PCT)} busy)."
    )


def latency_growth(scenario: Scenario, c: Collector) -> str:
    """Where p99 first exceeded twice its scenario median, and who was busiest just before."""
    ts = scenario["timeseries"]
    p99 = map(number, ts["p99_ms"])
    points = [(t, v) for t, v in zip(ts["t"], p99, strict=False) if v is not None]
    if not points:
        return "Latency growth: not enough data."
    median = percentile([v for _, v in points], 50)
    first = next(((t, v) for t, v in points if v > LATENCY_GROWTH_FACTOR * median), None)
    if first is None:
        factor = f"{LATENCY_GROWTH_FACTOR:g}x"
        return f"Latency growth: p99 never exceeded {factor} its median ({fmt_ms(median)})."
    t, v = first
    before = busiest(mean_per_key(c["t"], c["cpu_pct"], Window(t - LOOKBACK_S, t)))
    who = f"**{before[0]}** ({fmt_cpu(before[1])} of one core)" if before else NA
    return (
        f"Latency grew first at t = {fmt_plain(t)} s: p99 {fmt_ms(v)} > {LATENCY_GROWTH_FACTOR:g}x "
        f"its median {fmt_ms(median)}; busiest process in the {fmt_plain(LOOKBACK_S)} s before: "
        f"{who}."
    )


def usage(scenario: Scenario, c: Collector) -> tuple[dict[str, float], float | None]:
    """Mean CPU per process and mean machine busy % over the scenario's window."""
    window = window_of(scenario)
    cpu = mean_per_key(c["t"], c["cpu_pct"], window)
    return cpu, mean(values_in(c["t"], c["machine_busy_pct"], window))


def bottleneck_lines(scenario: Scenario, c: Collector) -> list[str]:
    cpu, machine = usage(scenario, c)
    ranked = ", ".join(f"{k} {fmt_cpu(v)}" for k, v in sorted(cpu.items(), key=lambda i: -i[1]))
    return [
        f"- Mean CPU per process (% of one core): {ranked or 'not enough data'}",
        f"- Machine busy: mean {fmt_cpu(machine)}",
        f"- {saturation(cpu, machine)}",
        f"- {latency_growth(scenario, c)}",
    ]


def section_bottleneck(results: Results, plots: Mapping[str, str]) -> list[str]:
    lines = ["## 6. Bottleneck", ""]
    for s in results["scenarios"]:
        lines += [scenario_title(s), "", *bottleneck_lines(s, results["collector"]), ""]
    lines += image(plots, "cpu", "CPU per process over the run")
    lines += image(plots, "redis", "Redis commands per second over the run")
    return lines + image(plots, "lag", "consumer lag over the run")


def section_failures(chaos: Mapping[str, Any] | None) -> list[str]:
    """The failure matrix's figures, from the latest `make chaos` run (reports/latest-chaos)."""
    if chaos is None:
        return [
            "## 7. Failure cases",
            "",
            "No `make chaos` run is on record in perf/reports/latest-chaos: run `make chaos` for "
            "the failure matrix's figures (Redis, Sentinel and Kafka faults, SIGKILL and SIGTERM "
            "of each service).",
            "",
        ]
    plots = {c["case"]: f"chaos-{c['case']}.png" for c in chaos["cases"] if c.get("timeline")}
    return failure_section(chaos, plots=plots, plot_dir=f"../{chaos['run_id']}/")


# ---------------------------------------------------------------- comparison


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


def queue_rows(results: Results) -> list[Row]:
    """The reference counts tokens; our queue phases count HTTP requests, `requests_per_token`
    of them per token (enter, poll, validate), so rates are divided back into tokens."""
    s = find_scenario(results, "queue")
    per_token = (number(s["extra"].get("requests_per_token")) if s else None) or 1.0
    p, part = closest_phase(s, 1000 * per_token), is_partial(s)
    top = number(s["max_sustainable_per_s"]) if s else None
    return [
        Row(
            "Queue target (tokens/s)", 1000, per(throughput(p), per_token), fmt_rate, "target", part
        ),
        Row("Queue max throughput (tokens/s)", 1200, per(top, per_token), fmt_rate, "higher", part),
        Row("Queue average latency", 50, avg_latency(p), fmt_ms, "lower", part),
        Row("Queue success rate", 99.8, success_pct(p), fmt_success_pct, "higher", part),
    ]


def reservation_rows(results: Results) -> list[Row]:
    s = find_scenario(results, "reservation")
    p, part = closest_phase(s, 500), is_partial(s)
    consumed = consumer_peak(results, s)
    return [
        Row("Reservation target (flows/s)", 500, throughput(p), fmt_rate, "target", part),
        Row("Consumer throughput (events/s)", 600, consumed, fmt_rate, "higher", part),
        Row("Reservation average latency", 100, avg_latency(p), fmt_ms, "lower", part),
        Row("Reservation success rate", 99.5, success_pct(p), fmt_success_pct, "higher", part),
    ]


def our_hardware(results: Results) -> str:
    env = results["environment"]
    return (
        f"one machine ({fmt_value(env.get('cpu_model', NA))}, {fmt_cores(env.get('cores', NA))} "
        f"cores, {fmt_plain(env.get('memory_gb'), ' GB')}) running a single Redis "
        f"({fmt_value(env.get('redis', NA))}), one broker ({fmt_value(env.get('broker', NA))}), "
        "every service and the load generator"
    )


def section_comparison(results: Results, rows: Sequence[Row]) -> list[str]:
    body = [[r.label, r.show(r.reference), r.ours_text, r.verdict] for r in rows]
    return [
        "## 8. Comparison with the reference report",
        "",
        *table(["measure", "reference", "ours", "verdict"], body),
        "",
        f"Targets count as met at {fmt_plain(TARGET_TOLERANCE * 100)} % of the rate or more; ours "
        "come from the phase offered closest to the target, consumer throughput is the peak "
        "events/s of the reservation service during the reservation scenario.",
        "",
        f"Hardware: the reference ran on {REFERENCE_HARDWARE}. "
        f"Ours ran on {our_hardware(results)}.",
        "",
        "### Hot-path goals (issue 10)",
        "",
        *goal_table(results),
        "",
        '"Before" is the landed code the goals were set against; a scenario not run here '
        'reads "not measured". CPU per flow comes from the reservation scenario\'s steady phase '
        "(below saturation), counted per complete flow; the load driver is shown apart.",
        "",
    ]


def section_conclusions(results: Results, rows: Sequence[Row]) -> list[str]:
    def labels(*verdicts: str) -> str:
        return ", ".join(r.label for r in rows if r.verdict in verdicts) or "none"

    lines = [
        "## 9. Conclusions",
        "",
        f"- Met or beaten against the reference: {labels('met', 'beats', 'matches')}.",
        f"- Not met: {labels('not met', 'falls short')}.",
        f"- Not measured in this run: {labels('not measured')}.",
    ]
    for s in results["scenarios"]:
        cpu, machine = usage(s, results["collector"])
        lines.append(f"- Bottleneck, {s['name']}: {saturation(cpu, machine)}")
    if is_incomplete(results):
        lines.append("- This run is INCOMPLETE: conclusions on partial scenarios are provisional.")
    return [*lines, ""]


# ---------------------------------------------------------------- entry points


def render(
    results: Results, plots: Mapping[str, str], chaos: Mapping[str, Any] | None = None
) -> str:
    rows = queue_rows(results) + reservation_rows(results)
    sections = [
        header(results),
        section_purpose(),
        section_systems(results),
        section_plan(results),
        section_environment(results),
        section_results(results, plots),
        section_bottleneck(results, plots),
        section_failures(chaos),
        section_comparison(results, rows),
        section_conclusions(results, rows),
    ]
    return "\n".join(line for lines in sections for line in lines)


def build_report(results: Results, out_dir: Path, chaos: Mapping[str, Any] | None = None) -> Path:
    """Writes out_dir/report.md and its PNG plots, with the failure matrix's figures `chaos`
    (`latest_chaos()`) when there are some; returns the report's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = make_plots(results, out_dir)
    path = out_dir / "report.md"
    path.write_text(render(results, plots, chaos), encoding="utf-8")
    return path


def latest_chaos() -> dict[str, Any] | None:
    """The figures of the latest full `make chaos` run, if there is one."""
    path = Path(__file__).resolve().parent / "reports" / "latest-chaos" / "chaos.json"
    if not path.exists():
        return None
    return cast(dict[str, Any], json.loads(path.read_text(encoding="utf-8")))


def load_results(path: Path) -> Results:
    return cast(Results, json.loads(path.read_text(encoding="utf-8")))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", type=Path, help="results.json written by perf.harness")
    args = parser.parse_args(argv)
    print(build_report(load_results(args.results), args.results.parent, latest_chaos()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
