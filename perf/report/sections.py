"""The report's sections, as Markdown lines."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from perf.chaos.report import failure_section
from perf.goals import goal_table
from perf.reference import reference
from perf.report.analysis import (
    TARGET_TOLERANCE,
    Row,
    Window,
    busiest,
    is_incomplete,
    mean,
    mean_per_key,
    our_hardware,
    peak,
    values_in,
    window_of,
)
from perf.report.formatting import (
    NA,
    fmt_cores,
    fmt_cpu,
    fmt_ms,
    fmt_plain,
    fmt_rate,
    fmt_success,
    fmt_value,
    number,
    table,
    unit_of,
)
from perf.report.plots import image
from perf.results import Collector, Phase, Results, Scenario
from perf.stats import percentile

SATURATED_PROCESS_PCT = 90.0  # mean % of one core
SATURATED_MACHINE_PCT = 95.0  # mean % of the whole machine busy
LATENCY_GROWTH_FACTOR = 2.0  # p99 above this times its scenario median counts as growth
LOOKBACK_S = 5.0  # how far before the growth to look for the busiest process


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
    return (
        ["## 1. Purpose", ""] + [f"{i}. {p}" for i, p in enumerate(reference().purposes, 1)] + [""]
    )


def section_systems(results: Results) -> list[str]:
    broker = fmt_value(results["environment"].get("broker", NA))
    redis = fmt_value(results["environment"].get("redis", NA))
    return [
        "## 2. Systems under test",
        "",
        f"A waiting room in Redis ({redis}) in front of an event-sourced reservation, payment and "
        f"seat-confirmation pipeline on Faust over a Kafka-protocol broker ({broker}).",
        "",
        *(f"- {line}" for line in reference().systems),
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
    extras = [
        f"  - {k}: {fmt_value(v, unit_of(k))}" for k, v in s["extra"].items() if k not in NOT_FACTS
    ]
    lines += (["- Facts:", *extras] if extras else []) + [""]
    lines += per_operation_table(s["extra"].get("per_operation"))
    lines += sse_table(s["extra"].get("sse"), s["phases"])
    lines += image(plots, f"throughput:{i}", f"{s['name']} throughput and p99")
    lines += image(plots, f"waits:{i}", f"{s['name']} queue wait distribution")
    return lines + image(plots, f"control:{i}", f"{s['name']} admit rate, lag and flow p99")


# Extras shown as a table or a plot of their own, not as fact lines.
NOT_FACTS = (
    "per_operation",
    "sse",
    "dropped_iterations",
    "admission_samples",
    "flow_p99_samples",
)


def per_operation_table(rows: object) -> list[str]:
    """queue-ops: saturation throughput and p99, fixed-rate p99, CPU and efficiency per op."""
    if not isinstance(rows, list) or not rows:
        return []
    head = ["workers", "op", "req/s (saturation)", "p99", "p99 at fixed rate", "dropped", "errors"]
    head += ["vs bare aiohttp", "CPU % of one core", "service req per CPU-s"]
    body = [
        [
            fmt_plain(r.get("workers")),
            str(r.get("op")),
            fmt_rate(r.get("req_per_s")),
            fmt_ms(r.get("p99_ms")),
            fmt_ms(r.get("p99_ms_fixed")),
            fmt_plain(r.get("dropped_fixed")),
            fmt_plain(r.get("errors")),
            fmt_plain(r.get("over_hello")),
            fmt_value(r.get("cpu_pct", {})),
            fmt_plain(r.get("req_per_cpu_s")),
        ]
        for r in rows
        if isinstance(r, dict)
    ]
    return [*table(head, body), ""]


def sse_table(rows: object, phases: Sequence[Phase]) -> list[str]:
    """sse: per count of open streams, memory, idle cost, Redis reads and the fan-out."""
    if not isinstance(rows, list) or not rows:
        return []
    head = ["streams", "queue RSS before → open", "per stream", "idle CPU", "WATCH/s"]
    head += ["told sold out, p50 / p99 / max", "not told", "fan-out CPU"]
    body = []
    for r, p in zip(rows, phases, strict=False):
        lat = p["latency_ms"]
        body.append(
            [
                fmt_plain(r.get("fans")),
                f"{fmt_plain(r.get('rss_before_mb'))} → {fmt_plain(r.get('rss_open_mb'))} MB",
                fmt_plain(r.get("kib_per_stream"), " KiB"),
                fmt_cpu(r.get("idle_cpu_pct")),
                fmt_plain(r.get("watch_per_s")),
                f"{fmt_ms(lat['p50'])} / {fmt_ms(lat['p99'])} / {fmt_ms(lat['max'])}",
                fmt_plain(p["errors"]),
                fmt_plain(r.get("fanout_cpu_s"), " s"),
            ]
        )
    return [*table(head, body), ""]


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
        f"Hardware: the reference ran on {reference().hardware}. "
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
