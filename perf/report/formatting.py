"""How the report writes numbers, units and tables."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from perf.stats import percentile

NA = "n/a"
UNIT_SUFFIXES = (("_per_s", "/s"), ("_ms", " ms"), ("_pct", " %"), ("_mb", " MB"), ("_s", " s"))


def number(x: object) -> float | None:
    """A finite float, or None for None, NaN, infinities and anything not a number."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    value = float(x)
    return value if math.isfinite(value) else None


def fmt(x: object, decimals: int = 1, suffix: str = "") -> str:
    value = number(x)
    return NA if value is None else f"{value:,.{decimals}f}{suffix}"


def fmt_rate(x: object) -> str:
    return fmt(x, 1, "/s")


def fmt_ms(x: object) -> str:
    return fmt(x, 1, " ms")


def fmt_cpu(x: object) -> str:
    return fmt(x, 1, " %")


def fmt_success(ratio: object) -> str:
    """A 0..1 ratio as a percentage that never rounds a failure up to 100 %."""
    value = number(ratio)
    if value is None:
        return NA
    pct = value * 100
    if pct < 100 and round(pct, 2) >= 100:
        return ">99.99 %"
    return f"{pct:,.2f} %"


def fmt_plain(x: object, suffix: str = "") -> str:
    """Whole numbers without decimals, others with up to three."""
    value = number(x)
    if value is None:
        return NA
    text = f"{value:,.0f}" if value.is_integer() else f"{value:,.3f}".rstrip("0").rstrip(".")
    return text + suffix


def unit_of(key: str) -> str:
    return next((unit for end, unit in UNIT_SUFFIXES if key.endswith(end)), "")


def fmt_value(value: object, unit: str = "") -> str:
    """Any JSON value from `extra`, `environment` or `config`, briefly."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or isinstance(value, int | float):
        return fmt_plain(value, unit)
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {fmt_value(v, unit)}" for k, v in value.items()) or "(none)"
    if isinstance(value, list):
        return fmt_list(value, unit)
    return str(value)


def fmt_list(values: list[object], unit: str) -> str:
    numbers = [v for v in (number(x) for x in values) if v is not None]
    if len(values) > 6 and len(numbers) == len(values):
        low, mid, high = min(numbers), percentile(numbers, 50), max(numbers)
        return (
            f"{len(values):,} values (min {fmt_plain(low, unit)}, median "
            f"{fmt_plain(mid, unit)}, max {fmt_plain(high, unit)})"
        )
    return ", ".join(fmt_value(v, unit) for v in values) or "(none)"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "scenario"


def fmt_cores(value: object) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{fmt_value(v)} {k}" for k, v in value.items())
    return fmt_value(value)
