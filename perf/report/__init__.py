"""Build report.md and its plots from a run's results: python -m perf.report path/to/results.json

The package splits the work: `analysis` computes, `plots` draws, `sections` writes Markdown
(`formatting` is how numbers read); this module puts a report together."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from perf.report.analysis import queue_rows, reservation_rows
from perf.report.plots import make_plots
from perf.report.sections import (
    header,
    section_bottleneck,
    section_comparison,
    section_conclusions,
    section_environment,
    section_failures,
    section_plan,
    section_purpose,
    section_results,
    section_systems,
)
from perf.results import Results


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
    path = Path(__file__).resolve().parents[1] / "reports" / "latest-chaos" / "chaos.json"
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
