import json
import math
import re
from pathlib import Path
from typing import cast

import pytest

from perf.report import build_report, main, render
from perf.report.formatting import fmt_rate, fmt_success
from perf.report.sections import section_failures
from perf.results import Results, empty_collector

SAMPLE = Path(__file__).parent / "data" / "perf_results_sample.json"
HEADINGS = [
    "## 1. Purpose",
    "## 2. Systems under test",
    "## 3. Plan",
    "## 4. Environment",
    "## 5. Results",
    "## 6. Bottleneck",
    "## 7. Failure cases",
    "## 8. Comparison with the reference report",
    "## 9. Conclusions",
]


def sample() -> Results:
    """A fresh copy of the hand-built sample run (queue, reservation, spike; 20 s collected)."""
    return cast(Results, json.loads(SAMPLE.read_text(encoding="utf-8")))


def section(report: str, number: int) -> str:
    """The text of section `number`, from its heading to the next section's."""
    start = report.index(f"\n## {number}. ")
    end = report.find("\n## ", start + 1)
    return report[start : end if end != -1 else len(report)]


def subsection(text: str, title: str) -> str:
    """The text under `### title` up to the next `###` heading."""
    start = text.index(f"### {title}")
    end = text.find("\n### ", start + 1)
    return text[start : end if end != -1 else len(text)]


def comparison_row(report: str, label: str) -> list[str]:
    line = next(ln for ln in section(report, 8).splitlines() if ln.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def build(results: Results, out_dir: Path) -> str:
    return build_report(results, out_dir).read_text(encoding="utf-8")


def text(results: Results) -> str:
    """The report's markdown without drawing plots (for tests about the words only)."""
    return render(results, plots={})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The sample's report, built once: (output directory, report text)."""
    out = tmp_path_factory.mktemp("report")
    path = build_report(sample(), out)
    return out, path.read_text(encoding="utf-8")


class TestTheReportFile:
    def test_is_written_as_report_md_in_the_output_directory(self, built: tuple[Path, str]) -> None:
        out, _ = built
        assert (out / "report.md").is_file()

    def test_has_every_section_heading_in_the_reference_order(
        self, built: tuple[Path, str]
    ) -> None:
        _, report = built
        positions = [report.index(heading) for heading in HEADINGS]
        assert positions == sorted(positions)

    def test_plans_each_scenario_with_its_offered_load_and_criterion(
        self, built: tuple[Path, str]
    ) -> None:
        plan = section(built[1], 3)
        assert "| target 1000/s | fixed | 1,000.0/s | 5 s |" in plan
        assert "| ramp 200->4000/s | ramp | varies (ramp) | 5 s |" in plan
        assert "Criterion: p99 <= 100 ms and errors <= 0.1 %." in plan

    def test_states_the_measured_environment(self, built: tuple[Path, str]) -> None:
        env = section(built[1], 4)
        assert "- CPU: Intel(R) Xeon(R) Processor" in env
        assert "- Cores: 2 logical, 2 usable" in env
        assert "- Memory: 7.8 GB" in env
        assert "- Redis: 7.0.15" in env

    def test_tabulates_each_phase_with_its_latencies(self, built: tuple[Path, str]) -> None:
        queue = subsection(section(built[1], 5), "queue")
        row = "| target 1000/s | 5,000 | 2 | 99.96 % | 999.5/s | 12.3 ms | 9.8 ms | 14.2 ms |"
        assert row in queue
        assert "- Max sustained throughput: 2,400.0/s (criterion: p99 <= 100 ms" in queue

    def test_reports_redis_and_consumers_over_the_scenarios_window_only(
        self, built: tuple[Path, str]
    ) -> None:
        reservation = subsection(section(built[1], 5), "reservation")
        assert "- Redis commands: mean 1,504.0/s, peak 1,520.0/s" in reservation
        assert "- Consumer throughput, reservation: mean 564.0/s, peak 640.0/s" in reservation
        assert "- Consumer lag, reservation/reservation.requested: peak 120 messages" in reservation
        assert "- Max sustained throughput: not measured" in reservation

    def test_lists_the_scenarios_extra_facts_with_units(self, built: tuple[Path, str]) -> None:
        spike = subsection(section(built[1], 5), "spike")
        assert "  - time_to_sell_out_s: 3.2 s" in spike
        assert "  - queue_wait_s: p50 0.8 s, p95 2.1 s, p99 2.9 s" in spike
        assert "  - seats_sold_twice: 0" in spike
        assert "  - queue_wait_samples_s: 40 values (min 0.1 s, median 1.1 s, max 3.1 s)" in spike

    def test_without_a_chaos_run_the_failure_section_says_how_to_get_one(
        self, built: tuple[Path, str]
    ) -> None:
        assert "run `make chaos`" in section(built[1], 7)

    def test_is_rebuilt_next_to_a_results_file_from_the_command_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        results = tmp_path / "results.json"
        results.write_text(SAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
        assert main([str(results)]) == 0
        assert (tmp_path / "report.md").is_file()
        assert capsys.readouterr().out.strip() == str(tmp_path / "report.md")


class TestTheComparisonWithTheReference:
    @pytest.mark.parametrize(
        ("label", "reference", "ours", "verdict"),
        [
            ("Queue target (tokens/s)", "1,000.0/s", "999.5/s", "met"),
            ("Queue max throughput (tokens/s)", "1,200.0/s", "2,400.0/s", "beats"),
            ("Queue average latency", "50.0 ms", "12.3 ms", "beats"),
            ("Queue success rate", "99.80 %", "99.96 %", "beats"),
            ("Reservation target (flows/s)", "500.0/s", "499.0/s", "met"),
            ("Consumer throughput (events/s)", "600.0/s", "640.0/s", "beats"),
            ("Reservation average latency", "100.0 ms", "85.4 ms", "beats"),
            ("Reservation success rate", "99.50 %", "99.88 %", "beats"),
        ],
    )
    def test_shows_the_samples_numbers_beside_the_references(
        self, built: tuple[Path, str], label: str, reference: str, ours: str, verdict: str
    ) -> None:
        assert comparison_row(built[1], label) == [label, reference, ours, verdict]

    def test_takes_the_phase_offered_closest_to_the_target(self) -> None:
        results = sample()
        fixed = results["scenarios"][0]["phases"][0]
        results["scenarios"][0]["phases"].append(
            {**fixed, "name": "over 1500/s", "offered_per_s": 1500.0, "throughput_per_s": 1490.0}
        )
        report = text(results)
        assert comparison_row(report, "Queue target (tokens/s)")[2] == "999.5/s"

    def test_counts_queue_rates_in_tokens_when_each_token_takes_several_requests(self) -> None:
        results = sample()
        queue = results["scenarios"][0]
        queue["extra"]["requests_per_token"] = 3
        fixed = queue["phases"][0]
        queue["phases"][0] = {**fixed, "offered_per_s": 3000.0, "throughput_per_s": 2940.0}
        report = text(results)
        assert comparison_row(report, "Queue target (tokens/s)")[2:] == ["980.0/s", "not met"]
        assert comparison_row(report, "Queue max throughput (tokens/s)")[2] == "800.0/s"

    def test_says_a_missed_target_is_not_met(self) -> None:
        results = sample()
        results["scenarios"][1]["phases"][0]["throughput_per_s"] = 410.0
        report = text(results)
        assert comparison_row(report, "Reservation target (flows/s)")[3] == "not met"
        assert "- Not met: Reservation target (flows/s)." in section(report, 9)

    def test_says_not_measured_when_a_scenario_is_absent(self) -> None:
        results = sample()
        results["scenarios"] = [s for s in results["scenarios"] if s["name"] != "reservation"]
        report = text(results)
        row = comparison_row(report, "Consumer throughput (events/s)")
        assert row[2:] == ["n/a", "not measured"]

    def test_contrasts_the_reference_hardware_with_the_measured_machine(
        self, built: tuple[Path, str]
    ) -> None:
        comparison = section(built[1], 8)
        assert "3-node Redis cluster and 3 Kafka brokers" in comparison
        assert "one machine (Intel(R) Xeon(R) Processor, 2 logical, 2 usable cores" in comparison


class TestAnIncompleteRun:
    @pytest.fixture
    def report(self) -> str:
        results = sample()
        results["complete"] = False
        results["problems"] = ["harness stopped after 18 s"]
        results["scenarios"][1]["complete"] = False
        results["scenarios"][1]["problems"] = ["broker unreachable at t=13"]
        return text(results)

    def test_is_labelled_incomplete_at_the_top_with_its_problems(self, report: str) -> None:
        banner = report[: report.index(HEADINGS[0])]
        assert "INCOMPLETE RUN:" in banner
        assert "harness stopped after 18 s" in banner
        assert "reservation: broker unreachable at t=13" in banner

    def test_labels_the_incomplete_scenarios_numbers_as_partial(self, report: str) -> None:
        assert "### reservation (PARTIAL: broker unreachable at t=13)" in section(report, 5)
        assert comparison_row(report, "Reservation average latency")[2] == "85.4 ms (partial)"
        assert comparison_row(report, "Queue average latency")[2] == "12.3 ms"

    def test_is_flagged_by_a_scenario_alone(self) -> None:
        results = sample()
        results["scenarios"][2]["complete"] = False
        results["scenarios"][2]["problems"] = ["sell-out not observed"]
        report = text(results)
        assert "INCOMPLETE RUN:" in report[: report.index(HEADINGS[0])]

    def test_a_complete_run_carries_no_incomplete_label(self, built: tuple[Path, str]) -> None:
        assert "INCOMPLETE" not in built[1]
        assert "PARTIAL" not in built[1]


class TestMissingNumbers:
    @pytest.fixture
    def report(self) -> str:
        results = sample()
        phase = results["scenarios"][0]["phases"][0]
        phase["latency_ms"]["avg"] = math.nan
        phase["latency_ms"]["p99"] = cast(float, None)
        phase["success_rate"] = cast(float, None)
        results["scenarios"][0]["max_sustainable_per_s"] = None
        return text(results)

    def test_render_as_n_a_in_the_phase_table(self, report: str) -> None:
        queue = subsection(section(report, 5), "queue")
        row = next(ln for ln in queue.splitlines() if ln.startswith("| target 1000/s |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[3] == "n/a"  # success
        assert cells[5] == "n/a"  # avg
        assert cells[8] == "n/a"  # p99

    def test_render_as_n_a_never_as_zero_in_the_comparison(self, report: str) -> None:
        assert comparison_row(report, "Queue average latency")[2:] == ["n/a", "not measured"]
        assert comparison_row(report, "Queue success rate")[2:] == ["n/a", "not measured"]
        assert "| 0.0 ms |" not in report
        assert "| 0.00 % |" not in report

    def test_a_ramp_without_a_sustainable_rate_says_not_reached(self, report: str) -> None:
        assert "- Max sustained throughput: not reached" in section(report, 5)

    def test_nan_in_a_results_file_loads_and_renders_as_n_a(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        results = sample()
        results["scenarios"][1]["phases"][0]["latency_ms"]["avg"] = math.nan
        path = tmp_path / "results.json"
        path.write_text(json.dumps(results), encoding="utf-8")  # writes a bare NaN
        main([str(path)])
        capsys.readouterr()
        report = (tmp_path / "report.md").read_text(encoding="utf-8")
        assert comparison_row(report, "Reservation average latency")[2] == "n/a"


class TestTheBottleneck:
    def test_names_the_process_with_the_highest_mean_cpu(self, built: tuple[Path, str]) -> None:
        bottleneck = section(built[1], 6)
        assert "**queue** saturated: mean 95.5 % of one core" in subsection(bottleneck, "queue")
        assert "**reservation** at a mean 60.0 %" in subsection(bottleneck, "reservation")

    def test_says_saturated_only_when_the_data_says_so(self, built: tuple[Path, str]) -> None:
        bottleneck = section(built[1], 6)
        assert "saturated" in subsection(bottleneck, "queue")
        assert "saturated" not in subsection(bottleneck, "reservation")

    def test_calls_a_machine_at_95_percent_busy_saturated_even_with_no_hot_process(
        self, built: tuple[Path, str]
    ) -> None:
        spike = subsection(section(built[1], 6), "spike")
        assert "The machine saturated (mean 97.0 % busy)" in spike
        assert "**k6** at 88.0 % of one core" in spike

    def test_finds_where_latency_grew_first_and_who_was_busiest_before(
        self, built: tuple[Path, str]
    ) -> None:
        queue = subsection(section(built[1], 6), "queue")
        assert "Latency grew first at t = 8 s: p99 40.0 ms > 2x its median 10.0 ms" in queue
        assert "in the 5 s before: **queue** (96.0 % of one core)" in queue

    def test_says_when_latency_never_grew(self, built: tuple[Path, str]) -> None:
        reservation = subsection(section(built[1], 6), "reservation")
        assert "p99 never exceeded 2x its median (185.0 ms)" in reservation

    def test_carries_the_identified_bottleneck_into_the_conclusions(
        self, built: tuple[Path, str]
    ) -> None:
        conclusions = section(built[1], 9)
        assert "- Bottleneck, queue: **queue** saturated" in conclusions


class TestThePlots:
    def test_are_non_empty_pngs_linked_relatively_from_the_report(
        self, built: tuple[Path, str]
    ) -> None:
        out, report = built
        links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
        expected = {"cpu.png", "consumer-lag.png", "redis-ops.png", "queue-wait-3-spike.png"}
        expected |= {f"throughput-{n}.png" for n in ("1-queue", "2-reservation", "3-spike")}
        assert set(links) == expected
        for link in links:
            assert (out / link).read_bytes().startswith(b"\x89PNG")

    def test_draw_the_queue_wait_histogram_only_where_samples_exist(
        self, built: tuple[Path, str]
    ) -> None:
        out, _ = built
        assert not (out / "queue-wait-1-queue.png").exists()
        assert (out / "queue-wait-3-spike.png").stat().st_size > 0


class TestTheGovernedGatePlot:
    def test_is_drawn_for_a_spike_that_sampled_its_admission_and_linked_from_the_report(
        self, tmp_path: Path
    ) -> None:
        results = sample()
        spike = results["scenarios"][2]
        t = [float(x) for x in spike["timeseries"]["t"]]
        spike["extra"]["admission_samples"] = {
            "t": t,
            "target": [100.0 + i for i in range(len(t))],
            "measured": [90.0 for _ in t],
            "reason": ["healthy" for _ in t],
        }
        spike["extra"]["flow_p99_samples"] = {"t": t, "p99_ms": [250.0 for _ in t]}
        report = build(results, tmp_path)
        assert "![spike admit rate, lag and flow p99](control-3-spike.png)" in report
        assert (tmp_path / "control-3-spike.png").read_bytes().startswith(b"\x89PNG")
        assert "admission_samples" not in report  # a plot, not a fact line

    def test_is_not_drawn_without_admission_samples(self, built: tuple[Path, str]) -> None:
        out, report = built
        assert not list(out.glob("control-*.png"))
        assert "control-" not in report


class TestEmptySeries:
    @pytest.fixture
    def empty(self) -> Results:
        results = sample()
        results["scenarios"][2]["timeseries"] = {
            "t": [],
            "throughput_per_s": [],
            "p99_ms": [],
            "errors_per_s": [],
        }
        results["collector"] = empty_collector()
        return results

    def test_do_not_crash_the_report_and_say_not_enough_data(
        self, empty: Results, tmp_path: Path
    ) -> None:
        report = build(empty, tmp_path)
        spike = subsection(section(report, 6), "spike")
        assert "Process CPU: not enough data." in spike
        assert "Latency growth: not enough data." in spike
        assert comparison_row(report, "Consumer throughput (events/s)")[2] == "n/a"

    def test_skip_their_plots_cleanly(self, empty: Results, tmp_path: Path) -> None:
        report = build(empty, tmp_path)
        assert not (tmp_path / "cpu.png").exists()
        assert not (tmp_path / "throughput-3-spike.png").exists()
        assert "cpu.png" not in report
        assert (tmp_path / "throughput-1-queue.png").exists()

    def test_a_scenario_without_phases_does_not_crash(self) -> None:
        results = sample()
        results["scenarios"][1]["phases"] = []
        report = text(results)
        assert comparison_row(report, "Reservation average latency")[2] == "n/a"


class TestNumberFormats:
    def test_rates_have_thousands_separators(self) -> None:
        assert fmt_rate(1234.5) == "1,234.5/s"

    def test_a_success_rate_short_of_one_never_shows_100_percent(self) -> None:
        assert fmt_success(0.999999) == ">99.99 %"
        assert fmt_success(1.0) == "100.00 %"
        assert fmt_success(0.9995) == "99.95 %"


class TestFailureSection:
    def test_the_failure_section_is_the_chaos_runs_figures_not_prose(self) -> None:
        case = {
            "case": "kill-queue",
            "what": "SIGKILL of the queue service",
            "fault": {"away_s": 1.5},
            "error_window_s": 1.2,
            "refused_503": 3,
            "no_answer": 40,
            "server_errors_5xx": 0,
            "accepted_202": 99,
            "accepted_lost": 0,
            "tokens_acknowledged": 120,
            "tokens_lost": 2,
            "tokens_lost_users": ["fan-1", "fan-7"],
            "tokens_may_be_lost": "a reason",
            "recovered_after_s": 1.4,
            "checks": {"no seat sold twice": [], "every 202 reaches a terminal status": ["r1"]},
            "refused_by_code": {"unavailable": 3},
            "gave_up": {},
        }
        lines = section_failures({"run_id": "t-chaos", "smoke": False, "cases": [case]})
        text = "\n".join(lines)
        assert "`kill-queue`" in text and "1.2 s" in text and "120 (2)" in text
        assert "BROKEN: every 202 reaches a terminal status" in text
        assert "fan-1, fan-7" in text and "a reason" in text
        assert "No `make chaos` run" in "\n".join(section_failures(None))
