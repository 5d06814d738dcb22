"""The hot-path goals side by side: the reference report, where we started, this run, the goal.

`make perf-reservation` and `make perf-queue` print this table (perf.harness) and every report
carries it (perf.report). The measures, the reference's figures, "before" (what the goals were set
against: issue 10, the landed code of 2026-11-30, this machine) and the goals are data, in
perf/reference.toml; "this run" is computed from the run's results.
A row the run did not measure reads "not measured".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from perf.reference import reference
from perf.results import Phase, Results, Scenario

OVERLOAD_P99_BOUND_MS = 2000.0  # "p99 bounded": accepted flows within 2 s at twice capacity
NOT_MEASURED = "not measured"


@dataclass(frozen=True, slots=True)
class Goal:
    measure: str
    reference: str
    before: str
    goal: str
    ours: Callable[[Results], tuple[str, bool | None]]  # (this run, met?) None: not measured


def _scenario(results: Results, name: str) -> Scenario | None:
    return next((s for s in results["scenarios"] if s["name"] == name), None)


def _fixed(s: Scenario | None, offered: float) -> Phase | None:
    if s is None:
        return None
    return next((p for p in s["phases"] if p["offered_per_s"] == offered), None)


def _number(x: object) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def flows_sustainable(results: Results) -> tuple[str, bool | None]:
    s = _scenario(results, "reservation")
    best = _number(s["max_sustainable_per_s"]) if s else None
    if best is None:
        return (NOT_MEASURED if s is None else "not reached"), (None if s is None else False)
    return f"{best:.0f} flows/s", best >= 500


def flows_at_500(results: Results) -> tuple[str, bool | None]:
    phase = _fixed(_scenario(results, "reservation"), 500)
    if phase is None:
        return NOT_MEASURED, None
    p99 = phase["latency_ms"]["p99"]
    served = phase["throughput_per_s"]
    return f"{served:.0f} (p99 {p99 / 1000:.1f} s)", served >= 495 and p99 <= 1000


def cpu_per_flow(results: Results) -> tuple[str, bool | None]:
    s = _scenario(results, "reservation")
    cpu = s["extra"].get("cpu_ms_per_flow") if s else None
    if not isinstance(cpu, dict) or _number(cpu.get("system")) is None:
        return NOT_MEASURED, None
    system = float(cpu["system"])
    return f"{system:.1f} ms (driver {float(cpu.get('driver', 0)):.1f} ms apart)", system <= 3.5


def tokens_sustainable(results: Results) -> tuple[str, bool | None]:
    s = _scenario(results, "queue")
    best = _number(s["max_sustainable_per_s"]) if s else None
    per_token = _number(s["extra"].get("requests_per_token")) if s else None
    if best is None or not per_token:
        return NOT_MEASURED, None
    return f"{best / per_token:.0f} tokens/s", best / per_token >= 2000


def ceiling_share(results: Results) -> tuple[str, bool | None]:
    s = _scenario(results, "queue")
    share = _number(s["extra"].get("max_sustainable_over_bare_aiohttp")) if s else None
    if share is None:
        return NOT_MEASURED, None
    return f"{share:.2f}", share >= 0.5


def overload(results: Results) -> tuple[str, bool | None]:
    s = _scenario(results, "reservation")
    if s is None or _fixed(s, 500) is None:
        return NOT_MEASURED, None
    accepted = _number(s["extra"].get("accepted_flow_p99_ms_fixed"))
    refused = int(_number(s["extra"].get("requests_retried_after_503")) or 0)
    refusal = _number(s["extra"].get("refusal_p99_ms"))
    if accepted is None:
        return NOT_MEASURED, None
    text = f"accepted flows p99 {accepted / 1000:.1f} s; {refused} requests refused with 503"
    if refusal is not None:
        text += f" (answered p99 {refusal:.0f} ms)"
    return text, accepted <= OVERLOAD_P99_BOUND_MS and refused > 0


OURS: dict[str, Callable[[Results], tuple[str, bool | None]]] = {
    f.__name__: f
    for f in (
        flows_sustainable,
        flows_at_500,
        cpu_per_flow,
        tokens_sustainable,
        ceiling_share,
        overload,
    )
}
GOALS = tuple(
    Goal(g.measure, g.reference, g.before, g.goal, OURS[g.ours]) for g in reference().goals
)


def goal_rows(results: Results) -> list[list[str]]:
    """measure, reference, before, this run, goal, met."""
    rows = []
    for g in GOALS:
        ours, met = g.ours(results)
        verdict = "-" if met is None else ("yes" if met else "no")
        rows.append([g.measure, g.reference, g.before, ours, g.goal, verdict])
    return rows


HEADER = ("measure", "reference report", "before (issue 10)", "this run", "goal", "met")


def goal_table(results: Results) -> list[str]:
    """Markdown lines."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in goal_rows(results)]
    return lines
