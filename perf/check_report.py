"""Check that a load-test report is complete and sane: `python -m perf.check_report DIR`.

Used by `make perf-smoke` in CI. It judges shape and correctness, never speed: the run and every
scenario completed, each phase carried load with mostly successful requests, percentiles are
finite and ordered, no seat was sold twice, the seat map agrees, and report.md and its plots exist.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

MIN_SUCCESS = 0.9  # smoke rates are tiny: anything below this is a broken system, not a slow one


def problems(results: dict[str, Any], report_dir: Path) -> list[str]:
    found = [f"run incomplete: {p}" for p in results.get("problems", [])]
    if not results.get("complete"):
        found.append("run not marked complete")
    for sc in results.get("scenarios", []):
        name = sc["name"]
        if not sc.get("complete"):
            found.append(f"{name}: incomplete {sc.get('problems')}")
        if not sc.get("phases"):
            found.append(f"{name}: no phases")
        for ph in sc.get("phases", []):
            label = f"{name}/{ph['name']}"
            if ph["requests"] <= 0:
                found.append(f"{label}: no requests")
                continue
            if not ph["success_rate"] >= MIN_SUCCESS:
                found.append(f"{label}: success rate {ph['success_rate']}")
            lat = ph["latency_ms"]
            values = [lat[k] for k in ("p50", "p95", "p99", "max")]
            if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
                found.append(f"{label}: non-finite latency {lat}")
            elif values != sorted(values):
                found.append(f"{label}: percentiles out of order {lat}")
        extra = sc.get("extra", {})
        if extra.get("seats_sold_twice", 0):
            found.append(f"{name}: {extra['seats_sold_twice']} seats sold twice")
        if extra.get("seat_map_agrees") is False:
            found.append(f"{name}: seat map disagrees with the confirmed flows")
    if not results.get("collector", {}).get("t"):
        found.append("collector recorded nothing")
    report = report_dir / "report.md"
    if not report.is_file() or report.stat().st_size == 0:
        found.append("report.md missing")
    if not list(report_dir.glob("*.png")):
        found.append("no plots")
    return found


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    report_dir = Path(args[0] if args else "perf/reports/latest").resolve()
    results = json.loads((report_dir / "results.json").read_text())
    found = problems(results, report_dir)
    for p in found:
        print(f"check_report: {p}", file=sys.stderr)
    if not found:
        print(f"check_report: {report_dir.name} is complete and sane")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
