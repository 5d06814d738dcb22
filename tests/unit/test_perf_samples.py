"""Load-test arithmetic: k6 CSV samples, phases, per-second series, the sustainable maximum,
percentiles, and the smoke run's sanity check."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from perf.check_report import problems
from perf.samples import Sample, max_sustainable, phase, read_k6_csv, series
from perf.stats import percentile

DATA = Path(__file__).parent / "data"
T0 = 1795590547.0  # the recorded run's first second, as Unix time


class TestK6Samples:
    def test_reads_request_durations_with_their_outcome_and_time(self) -> None:
        samples = read_k6_csv(DATA / "k6_sample.csv", T0)
        assert len(samples) == 6  # http_reqs rows are counts, not durations
        assert [s.ok for s in samples] == [True, False, True, False, True, False]
        assert math.isclose(samples[0].t, 0.034, abs_tol=1e-6)
        assert math.isclose(samples[0].ms, 0.655481)

    def test_ignores_other_scenarios(self) -> None:
        assert read_k6_csv(DATA / "k6_sample.csv", T0, scenario="warmup") == []


class TestPercentile:
    def test_interpolates_between_closest_ranks(self) -> None:
        assert percentile([1, 2, 3, 4], 50) == 2.5
        assert percentile([10], 99) == 10
        assert percentile(list(range(101)), 99) == 99

    def test_of_nothing_is_nan(self) -> None:
        assert math.isnan(percentile([], 50))


def ramp(n: int, slow_after: float) -> list[Sample]:
    """`n` requests a second for 20 s, fast until `slow_after`, then 300 ms each."""
    return [Sample(i / n, 5.0 if i / n < slow_after else 300.0, True) for i in range(20 * n)]


class TestPhases:
    def test_count_errors_and_successful_throughput_within_the_window_only(self) -> None:
        samples = [Sample(t / 10, 10.0, t % 10 != 0) for t in range(100)]
        p = phase("p", "fixed", samples, started_t=2.0, duration_s=5.0, offered_per_s=10)
        assert p["requests"] == 50 and p["errors"] == 5
        assert p["success_rate"] == 0.9 and p["throughput_per_s"] == 9.0

    def test_latency_percentiles_come_from_the_successful_samples(self) -> None:
        samples = [Sample(0.1, 1.0, True), Sample(0.2, 1000.0, False), Sample(0.3, 3.0, True)]
        p = phase("p", "fixed", samples, started_t=0, duration_s=1, offered_per_s=None)
        assert p["latency_ms"]["max"] == 3.0 and p["latency_ms"]["p50"] == 2.0


class TestSeries:
    def test_buckets_by_second_with_p99_and_errors(self) -> None:
        samples = [Sample(0.5, 1.0, True), Sample(0.6, 9.0, False), Sample(2.1, 4.0, True)]
        s = series(samples, 0.0, 3.0)
        assert s["t"] == [0.0, 1.0, 2.0]
        assert s["throughput_per_s"] == [1.0, 0.0, 1.0]
        assert s["errors_per_s"] == [1.0, 0.0, 0.0]
        assert s["p99_ms"][1] is None


class TestMaxSustainable:
    def test_is_the_best_window_before_latency_breaks_the_limit(self) -> None:
        best = max_sustainable(
            ramp(100, slow_after=10.0), 0, 20, p99_limit_ms=100, error_limit=0.001
        )
        assert best == 100.0

    def test_is_none_when_no_window_meets_the_criterion(self) -> None:
        samples = ramp(100, slow_after=0.0)
        assert max_sustainable(samples, 0, 20, p99_limit_ms=100, error_limit=0.001) is None


def sane_results() -> dict[str, Any]:
    lat = {"avg": 2.0, "p50": 1.0, "p95": 3.0, "p99": 4.0, "max": 5.0}
    return {
        "complete": True,
        "problems": [],
        "scenarios": [
            {
                "name": "spike",
                "complete": True,
                "problems": [],
                "phases": [{"name": "p", "requests": 10, "success_rate": 1.0, "latency_ms": lat}],
                "extra": {"seats_sold_twice": 0, "seat_map_agrees": True},
            }
        ],
        "collector": {"t": [1.0]},
    }


class TestSmokeCheck:
    def test_accepts_a_complete_sane_report(self, tmp_path: Path) -> None:
        (tmp_path / "report.md").write_text("# report\n")
        (tmp_path / "plot.png").write_bytes(b"png")
        assert problems(sane_results(), tmp_path) == []

    def test_rejects_double_sales_broken_percentiles_and_incomplete_runs(
        self, tmp_path: Path
    ) -> None:
        results = sane_results()
        results["complete"] = False
        sc = results["scenarios"][0]
        sc["extra"]["seats_sold_twice"] = 1
        sc["phases"][0]["latency_ms"]["p99"] = 0.5
        found = problems(results, tmp_path)
        assert any("sold twice" in p for p in found)
        assert any("out of order" in p for p in found)
        assert any("not marked complete" in p for p in found)
        assert "report.md missing" in found and "no plots" in found
