import math
from typing import Any

import pytest

from perf.k6_summary import SummaryError, measured_window, parse_summary


def recorded() -> dict[str, Any]:
    """Trimmed from a real perf/k6/queue.js summary (k6 v1.1.0, poll at 1000 req/s for 3 s)."""
    return {
        "bench": {
            "op": "poll",
            "mode": "fixed",
            "duration_s": 3,
            "warmup_s": 1,
            "rate": 1000,
            "start_ms": 1795585237712,
            "end_ms": 1795585240724,
            "window_ms": 3012,
        },
        "metrics": {
            "http_reqs": {
                "type": "counter",
                "contains": "default",
                "values": {"count": 4999, "rate": 1160.9898301926473},
            },
            "http_reqs{scenario:measure}": {
                "type": "counter",
                "contains": "default",
                "values": {"count": 3000, "rate": 696.7332447645413},
                "thresholds": {"count>=0": {"ok": True}},
            },
            "http_req_duration{scenario:measure}": {
                "type": "trend",
                "contains": "time",
                "values": {
                    "med": 0.599165,
                    "p(50)": 0.599165,
                    "p(95)": 0.9646623,
                    "p(99)": 1.9682453899999937,
                    "max": 8.402172,
                    "avg": 0.6575776876666676,
                    "min": 0.4025,
                },
                "thresholds": {"max>=0": {"ok": True}},
            },
            "http_req_failed{scenario:measure}": {
                "type": "rate",
                "contains": "default",
                "values": {"rate": 0.002, "passes": 6, "fails": 2994},
                "thresholds": {"rate>=0": {"ok": True}},
            },
            "dropped_iterations": {"type": "counter", "values": {"count": 9, "rate": 2.1}},
            "dropped_iterations{scenario:measure}": {
                "type": "counter",
                "values": {"count": 4, "rate": 0.9},
                "thresholds": {"count>=0": {"ok": True}},
            },
        },
    }


def test_counts_only_the_measured_scenario_over_its_own_window() -> None:
    stats = parse_summary(recorded())
    assert stats.requests == 3000
    assert stats.window_s == pytest.approx(3.012)
    assert stats.throughput_rps == pytest.approx(3000 / 3.012)  # not k6's diluted `rate`
    assert stats.dropped_iterations == 4


def test_reads_latency_percentiles_in_milliseconds() -> None:
    stats = parse_summary(recorded())
    assert (stats.p50_ms, stats.p95_ms, stats.max_ms) == (0.599165, 0.9646623, 8.402172)
    assert stats.p99_ms == pytest.approx(1.96824539)


def test_failed_requests_are_the_rate_metrics_passes() -> None:
    stats = parse_summary(recorded())
    assert stats.failed == 6
    assert stats.error_rate == pytest.approx(0.002)


def test_no_requests_gives_nan_error_rate_and_no_drops_when_absent() -> None:
    doc = recorded()
    doc["metrics"]["http_reqs{scenario:measure}"]["values"] = {"count": 0, "rate": 0}
    doc["metrics"]["http_req_failed{scenario:measure}"]["values"] = {"rate": 0, "passes": 0}
    del doc["metrics"]["dropped_iterations{scenario:measure}"]
    stats = parse_summary(doc)
    assert stats.requests == 0 and stats.throughput_rps == 0
    assert math.isnan(stats.error_rate)
    assert stats.dropped_iterations == 0


def test_missing_sub_metrics_are_an_error() -> None:
    doc = recorded()
    del doc["metrics"]["http_req_duration{scenario:measure}"]
    with pytest.raises(SummaryError, match="sub-metrics"):
        parse_summary(doc)


def test_missing_window_is_an_error() -> None:
    doc = recorded()
    doc["bench"] = {"window_ms": 0}
    with pytest.raises(SummaryError):
        parse_summary(doc)
    with pytest.raises(SummaryError):
        measured_window(doc)


def test_measured_window_is_in_unix_seconds() -> None:
    assert measured_window(recorded()) == (1795585237.712, 1795585240.724)
