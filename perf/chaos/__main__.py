"""`make chaos`: run the failure matrix and write its figures.

    python -m perf.chaos [--smoke] [case ...]

Writes perf/reports/<UTC timestamp>-chaos[-smoke]/{chaos.json, chaos.md}; perf/reports/latest-chaos
(or latest-chaos-smoke) points at it, and the load-test report's failure section reads it.
Exits 1 when a case breaks an invariant or does not run to its end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from perf.chaos.cases import BY_NAME, CASES, FULL, SMOKE
from perf.chaos.report import failure_section, plot_timelines
from perf.chaos.runner import run_case

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ROOT / "perf" / "reports"


def summary_line(c: dict[str, Any]) -> str:
    verdict = "invariants hold" if c["holds"] else "INVARIANTS BROKEN"
    return (
        f"{c['case']:<24} window {c['error_window_s']:>5.1f} s  503s {c['refused_503']:>4}  "
        f"no answer {c['no_answer']:>4}  202s {c['accepted_202']:>4} lost {c['accepted_lost']}  "
        f"tokens {c['tokens_acknowledged']} lost {c['tokens_lost']}  {verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", metavar="case", help=", ".join(BY_NAME))
    parser.add_argument("--smoke", action="store_true", help="a few seconds of load per case")
    parser.add_argument("--keep", action="store_true", help="keep every case's logs and data")
    args = parser.parse_args(argv)
    unknown = [n for n in args.cases if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}: one of {', '.join(BY_NAME)}")
    cases = [BY_NAME[n] for n in args.cases] if args.cases else list(CASES)
    size = SMOKE if args.smoke else FULL
    run_id = (
        datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-chaos" + ("-smoke" if args.smoke else "")
    )
    out = REPORTS / run_id
    out.mkdir(parents=True, exist_ok=True)
    workdir = ROOT / ".run" / run_id
    results: dict[str, Any] = {"run_id": run_id, "smoke": args.smoke, "cases": [], "errors": []}
    for case in cases:
        print(f"{case.name}: {case.what} ...", flush=True)
        started = time.monotonic()
        try:
            figures = asyncio.run(run_case(case, workdir / case.name, size))
        except Exception as exc:
            traceback.print_exc()
            results["errors"].append({"case": case.name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        figures["took_s"] = round(time.monotonic() - started, 1)
        results["cases"].append(figures)
        print("  " + summary_line(figures), flush=True)
        for name, violations in figures["checks"].items():
            for v in violations:
                print(f"    {name}: {v}", flush=True)
    (out / "chaos.json").write_text(json.dumps(results, indent=2) + "\n")
    plots = plot_timelines(results, out)
    section = failure_section(results, "# Failure cases", plots)
    (out / "chaos.md").write_text("\n".join(section) + "\n")
    latest = REPORTS / ("latest-chaos-smoke" if args.smoke else "latest-chaos")
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(out.name)
    broken = [c["case"] for c in results["cases"] if not c["holds"]] + [
        e["case"] for e in results["errors"]
    ]
    if broken or args.keep:
        print(f"logs     {workdir.relative_to(ROOT)}", flush=True)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"report   {(out / 'chaos.md').relative_to(ROOT)}", flush=True)
    if broken:
        print(f"FAILED: {', '.join(broken)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
