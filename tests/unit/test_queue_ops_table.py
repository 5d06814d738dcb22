"""The queue-ops scenario's per-operation table, from its phases and the collector's CPU; the sse
scenario's table."""

from __future__ import annotations

from perf.report.sections import per_operation_table, sse_table
from perf.results import Phase, Scenario
from perf.scenarios.base import empty_scenario
from perf.scenarios.queue_ops import per_operation, phase_name


def made(name: str, rate: float, p99: float, errors: int = 0) -> Phase:
    return {
        "name": name,
        "kind": "fixed" if name.endswith("fixed") else "saturate",
        "offered_per_s": None,
        "started_t": 0.0,
        "duration_s": 10.0,
        "requests": int(rate * 10),
        "errors": errors,
        "success_rate": 1.0,
        "throughput_per_s": rate,
        "latency_ms": {"avg": p99 / 2, "p50": p99 / 3, "p95": p99 / 2, "p99": p99, "max": p99},
    }


def scenario() -> Scenario:
    sc = empty_scenario("queue-ops", "requests", "n/a")
    sc["phases"] = [
        made(phase_name(1, "hello", "saturate"), 10_000, 4.0),
        made(phase_name(1, "hello", "fixed"), 1000, 1.0),
        made(phase_name(1, "issue", "saturate"), 2_500, 8.0, errors=1),
        made(phase_name(1, "issue", "fixed"), 1000, 3.0, errors=2),
    ]
    sc["extra"] = {"workers": [1], "dropped_iterations": {phase_name(1, "issue", "fixed"): 7}}
    return sc


CPU = {
    phase_name(1, "hello", "saturate"): {"hello": 50.0, "k6": 100.0, "kafka": 5.0},
    phase_name(1, "issue", "saturate"): {"queue": 50.0, "k6": 60.0, "redis": 10.0, "kafka": 4.0},
}


def test_each_operation_is_set_against_bare_aiohttp_with_as_many_processes() -> None:
    rows = {r["op"]: r for r in per_operation(scenario(), CPU)}
    assert rows["hello"]["over_hello"] == 1.0
    assert rows["issue"]["over_hello"] == 0.25


def test_the_services_requests_per_cpu_second_come_from_its_own_cpu_share() -> None:
    issue = next(r for r in per_operation(scenario(), CPU) if r["op"] == "issue")
    assert issue["req_per_cpu_s"] == 5000  # 2,500 req/s on half a core
    assert issue["cpu_pct"] == {"queue": 50.0, "k6": 60.0, "redis": 10.0, "others": 4.0}


def test_errors_of_both_modes_and_the_fixed_rates_dropped_iterations_are_counted() -> None:
    issue = next(r for r in per_operation(scenario(), CPU) if r["op"] == "issue")
    assert issue["errors"] == 3
    assert issue["dropped_fixed"] == 7
    assert issue["p99_ms_fixed"] == 3.0


def test_without_cpu_samples_the_efficiency_is_unknown_not_zero() -> None:
    issue = next(r for r in per_operation(scenario(), {}) if r["op"] == "issue")
    assert issue["req_per_cpu_s"] is None


def test_the_report_renders_one_table_row_per_operation() -> None:
    lines = per_operation_table(per_operation(scenario(), CPU))
    assert lines[0].startswith("| workers | op |")
    assert sum(line.startswith("| 1 |") for line in lines) == 2
    assert per_operation_table(None) == []


def test_the_sse_table_shows_each_count_with_its_fan_out_and_streams_not_told() -> None:
    told = made("1000 streams told sold out", 1000, 125.0, errors=3)
    row = {"fans": 1000, "rss_before_mb": 77.0, "rss_open_mb": 93.0, "kib_per_stream": 16.6}
    row |= {"idle_cpu_pct": 1.1, "watch_per_s": 2.0, "fanout_cpu_s": 0.03}
    lines = sse_table([row], [told])
    assert lines[0].startswith("| streams | queue RSS before → open |")
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells == [
        "1,000",
        "77 → 93 MB",
        "16.6 KiB",
        "1.1 %",
        "2",
        "41.7 ms / 125.0 ms / 125.0 ms",
        "3",
        "0.03 s",
    ]
    assert sse_table(None, []) == []
