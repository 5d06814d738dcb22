"""The failure matrix's figures as the load-test report's failure section (markdown)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

COLUMNS = (
    "case",
    "fault",
    "error window",
    "503s",
    "no answer",
    "5xx",
    "202s",
    "202s lost",
    "tokens (lost)",
    "recovered after",
    "invariants",
)


def _fault_figures(fault: Mapping[str, Any]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in fault.items()) or "-"


def case_row(c: Mapping[str, Any]) -> list[str]:
    broken = [name for name, v in c["checks"].items() if v]
    return [
        f"`{c['case']}`",
        f"{c['what']} ({_fault_figures(c['fault'])})",
        f"{c['error_window_s']:.1f} s",
        str(c["refused_503"]),
        str(c["no_answer"]),
        str(c["server_errors_5xx"]),
        str(c["accepted_202"]),
        str(c["accepted_lost"]),
        f"{c['tokens_acknowledged']} ({c['tokens_lost']})",
        f"{c['recovered_after_s']:.1f} s",
        "hold" if not broken else "BROKEN: " + "; ".join(broken),
    ]


def plot_timelines(results: Mapping[str, Any], out_dir: Path) -> dict[str, str]:
    """One PNG per case: flows finished per second and the reservation group's lag over the
    case, the fault marked. -> case name: file name."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    plots: dict[str, str] = {}
    for c in results["cases"]:
        tl = c.get("timeline")
        if not tl or not tl["t"]:
            continue
        fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7, 3.6))
        top.plot(range(len(tl["flows_done_per_s"])), tl["flows_done_per_s"], color="tab:blue")
        top.set_ylabel("flows/s")
        lag = [float("nan") if v is None else v for v in tl["reservation_lag"]]
        bottom.plot(tl["t"], lag, color="tab:red")
        bottom.set_ylabel("lag (records)")
        bottom.set_xlabel("seconds since the load started")
        for ax in (top, bottom):
            ax.axvline(c["fault_at_s"], color="grey", linestyle="--", linewidth=1)
        top.set_title(f"{c['case']}: {c['what']}", fontsize=9)
        fig.tight_layout()
        name = f"chaos-{c['case']}.png"
        fig.savefig(out_dir / name, dpi=80)
        plt.close(fig)
        plots[c["case"]] = name
    return plots


def failure_section(
    results: Mapping[str, Any],
    title: str = "## 7. Failure cases",
    plots: Mapping[str, str] | None = None,
    plot_dir: str = "",
) -> list[str]:
    cases: Sequence[Mapping[str, Any]] = results["cases"]
    lines = [
        title,
        "",
        f"From `make chaos` run `{results['run_id']}` ({'smoke' if results['smoke'] else 'full'}"
        f" size): each case drives steady fans through the HTTP APIs (enter, reserve, pay; a 503 "
        "is retried after its Retry-After, a dropped connection after 0.5 s), injects one fault, "
        "then checks the invariants from outside (APIs and topics): no seat sold twice, every "
        "completed payment confirmed or refunded, every 202 terminal, the seat map equal to the "
        "decisions, no acknowledged queue token silently gone. The error window runs from the "
        "first failed answer (503 or no answer) after the fault to the last one.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(case_row(c)) + " |" for c in cases]
    lines.append("")
    for c in cases:
        notes = []
        if c["refused_by_code"]:
            codes = ", ".join(f"{k} {v}" for k, v in sorted(c["refused_by_code"].items()))
            notes.append(f"503 codes: {codes}")
        if c["gave_up"]:
            notes.append(f"fans who gave up a step after 30 s of retries: {c['gave_up']}")
        if c["tokens_lost"]:
            users = ", ".join(c["tokens_lost_users"])
            why = c.get("tokens_may_be_lost") or "a defect: this breaks an invariant"
            reasons = ", ".join(f"{k} {v}" for k, v in c.get("tokens_lost_by_reason", {}).items())
            first, last = c.get("tokens_lost_acknowledged_s") or ["?", "?"]
            notes.append(
                f"tokens lost: {c['tokens_lost']} ({users}), acknowledged from {first} s to "
                f"{last} s, answered later as: {reasons or 'not recorded'}; because {why}"
            )
        if c.get("redis_roles"):
            notes.append("Redis roles seen from outside: " + "; ".join(c["redis_roles"]))
        if c.get("env"):
            notes.append(f"settings: {c['env']}")
        if notes:
            lines.append(f"- `{c['case']}`: " + "; ".join(notes) + ".")
    for e in results.get("errors", []):
        lines.append(f"- `{e['case']}` did not run to the end: {e['error']}")
    lines.append("")
    for case, name in (plots or {}).items():
        lines += [f"![{case}: flows/s and reservation lag]({plot_dir}{name})", ""]
    return lines
