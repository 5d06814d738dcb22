"""The admission controller (services/queue/core.py): AIMD on the pipeline's health."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from services.queue.core import ControlLaw, Health, combined_health, next_rate

LAW = ControlLaw(floor=10.0, ceiling=500.0)
HEALTHY = Health(delay_ms=20.0, refused=0)
BEHIND = Health(delay_ms=2000.0, refused=0)
REFUSING = Health(delay_ms=20.0, refused=3)
IN_BAND = Health(delay_ms=(LAW.low_ms + LAW.high_ms) / 2, refused=0)

healths = st.one_of(
    st.none(),
    st.builds(Health, st.floats(0, 10_000, allow_nan=False), st.integers(0, 50)),
)


def run(law: ControlLaw, rate: float, signals: list[Health | None], period_ms: int = 1000):
    """The controller driven once per period; every rate and reason it chose."""
    now, decreased, out = 10_000_000, 0, []
    for h in signals:
        now += period_ms
        c = next_rate(law, rate, h, elapsed_ms=period_ms, now_ms=now, decreased_at_ms=decreased)
        rate, decreased = c.rate, c.decreased_at_ms
        out.append(c)
    return out


@given(st.floats(0, 10_000, allow_nan=False), st.lists(healths, max_size=60))
def test_the_rate_never_leaves_the_floor_and_the_ceiling(start: float, signals: list) -> None:
    for c in run(LAW, start, signals):
        assert LAW.floor <= c.rate <= LAW.ceiling


@given(st.floats(10, 500, allow_nan=False))
def test_a_healthy_pipeline_raises_the_rate_to_the_ceiling_without_a_step_down(
    start: float,
) -> None:
    rates = [c.rate for c in run(LAW, start, [HEALTHY] * 30)]
    assert rates == sorted(rates)
    assert rates[-1] == LAW.ceiling


@given(st.floats(10, 500, allow_nan=False), st.sampled_from([BEHIND, REFUSING, None]))
def test_a_pipeline_in_trouble_lowers_the_rate_to_the_floor_but_never_stops_the_line(
    start: float, trouble: Health | None
) -> None:
    rates = [c.rate for c in run(LAW, start, [trouble] * 60)]
    assert rates == sorted(rates, reverse=True)
    assert rates[-1] == LAW.floor > 0


@given(st.lists(healths, min_size=1, max_size=60))
def test_cuts_are_at_least_a_cooldown_apart(signals: list) -> None:
    cuts = [c.decreased_at_ms for c in run(LAW, 300.0, signals)]
    distinct = sorted(set(cuts) - {0})
    assert all(b - a >= LAW.cooldown_ms for a, b in itertools.pairwise(distinct))


@given(st.floats(10, 500, allow_nan=False))
def test_in_the_dead_band_the_rate_is_held(start: float) -> None:
    assert {c.rate for c in run(LAW, start, [IN_BAND] * 10)} == {start}


def test_each_decision_names_its_reason() -> None:
    reasons = [c.reason for c in run(LAW, 100.0, [HEALTHY, IN_BAND, BEHIND, REFUSING, None])]
    assert reasons == ["healthy", "holding", "behind", "refusing", "silent"]


@settings(max_examples=40, deadline=None)
@given(st.floats(30, 450, allow_nan=False), st.floats(10, 500, allow_nan=False))
def test_against_a_pipeline_of_fixed_capacity_it_settles_near_it_and_does_not_starve(
    capacity: float, start: float
) -> None:
    """A fluid model: the backlog grows by what is admitted beyond capacity; the delay is the
    backlog over capacity. After two minutes the rate averages near the capacity, the delay
    stays bounded, and the rate never drops under the floor."""
    rate, backlog, now, decreased = start, 0.0, 10_000_000, 0
    rates, delays = [], []
    for _ in range(240):
        backlog = max(0.0, backlog + (rate - capacity) * 1.0)
        delay_ms = backlog / capacity * 1000
        now += 1000
        c = next_rate(
            LAW,
            rate,
            Health(delay_ms, 0),
            elapsed_ms=1000,
            now_ms=now,
            decreased_at_ms=decreased,
        )
        rate, decreased = c.rate, c.decreased_at_ms
        rates.append(rate)
        delays.append(delay_ms)
    settled = rates[120:]
    mean = sum(settled) / len(settled)
    assert 0.6 * capacity <= mean <= 1.15 * capacity
    assert max(delays[120:]) <= 5_000
    assert min(rates) >= LAW.floor


def test_health_combines_the_fresh_reports_only() -> None:
    now = 100_000
    reports = [(100.0, 0, now - 500), (900.0, 2, now - 1000), (5000.0, 9, now - 60_000)]
    assert combined_health(reports, now, max_age_ms=5000) == Health(900.0, 2)
    assert combined_health([(5000.0, 9, now - 60_000)], now, max_age_ms=5000) is None
