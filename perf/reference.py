"""The reference report and our goals, read from perf/reference.toml (the data, not code)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REFERENCE_FILE = Path(__file__).with_name("reference.toml")


@dataclass(frozen=True, slots=True)
class Target:
    label: str
    value: float
    better: str  # "target" (a rate to reach), "higher" or "lower"


@dataclass(frozen=True, slots=True)
class GoalText:
    ours: str  # the name of the function in perf/goals.py that reads this run's figure
    measure: str
    reference: str
    before: str
    goal: str


@dataclass(frozen=True, slots=True)
class Reference:
    purposes: tuple[str, ...]
    hardware: str
    systems: tuple[str, ...]
    targets: dict[str, Target]
    goals: tuple[GoalText, ...]


@cache
def reference(path: Path = REFERENCE_FILE) -> Reference:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return Reference(
        purposes=tuple(data["purposes"]),
        hardware=data["hardware"],
        systems=tuple(data["systems"]),
        targets={k: Target(**v) for k, v in data["targets"].items()},
        goals=tuple(GoalText(**g) for g in data["goals"]),
    )
