"""The report's PNG plots (matplotlib, files only)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a display

from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from perf.report.analysis import Window, window_of
from perf.report.formatting import number, slug
from perf.results import Collector, Results, Scenario

WAIT_SAMPLES_KEY = "queue_wait_samples_s"
ADMISSION_KEY = "admission_samples"  # the spike's admit rate over time (perf/scenarios/spike.py)
FLOW_P99_KEY = "flow_p99_samples"


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


def plot_control(path: Path, scenario: Scenario, collector: Collector) -> bool:
    """The governed gate over time, one figure: the admit rate the controller chose and the
    rate measured, the reservation consumer lag (from the collector), and the flow p99 of each
    second (flows that finished in it)."""
    adm, fp = scenario["extra"].get(ADMISSION_KEY), scenario["extra"].get(FLOW_P99_KEY)
    if not isinstance(adm, Mapping) or not isinstance(fp, Mapping) or not adm.get("t"):
        return False
    fig, (rate, lag, p99) = plt.subplots(3, 1, figsize=(9, 7), sharex=True, layout="constrained")
    rate.plot(*aligned(adm["t"], adm["target"]), label="admit rate chosen", color="tab:blue")
    rate.plot(*aligned(adm["t"], adm["measured"]), label="admitted (measured)", color="tab:cyan")
    rate.set(ylabel="fans/s", title=f"{scenario['name']}: admission, lag and flow p99")
    rate.legend(fontsize=7, loc="upper right")
    reservation = [v for k, v in collector["consumer_lag"].items() if k.startswith("reservation/")]
    total = [sum(values) for values in zip(*reservation, strict=False)] if reservation else []
    lag.plot(*aligned(collector["t"], total), color="tab:orange")
    lag.set(ylabel="reservation lag (msgs)")
    p99.plot(*aligned(fp.get("t", []), fp.get("p99_ms", [])), color="tab:red")
    p99.axhline(1000, color="grey", linestyle="--", linewidth=0.8)
    p99.set(ylabel="flow p99 (ms)", xlabel="run time (s)")
    window = window_of(scenario)
    if window is not None:
        p99.set_xlim(window.start, window.end)
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
        control = partial(plot_control, scenario=s, collector=c)
        jobs[f"control:{i}"] = (f"control-{name}.png", control)
    return {key: file for key, (file, draw) in jobs.items() if draw(out_dir / file)}


def image(plots: Mapping[str, str], key: str, alt: str) -> list[str]:
    return [f"![{alt}]({plots[key]})", ""] if key in plots else []
