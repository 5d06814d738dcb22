"""The decision that a Faust worker's table recovery has stalled (shared/recovery_watch.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.recovery_watch import RecoveryWatch


def test_recovery_reading_nothing_for_the_bound_is_a_stall() -> None:
    watch = RecoveryWatch(stall_s=30)
    assert not watch.stalled(0, True, 151)
    assert not watch.stalled(29.9, True, 151)
    assert watch.stalled(30, True, 151)


def test_any_progress_restarts_the_clock() -> None:
    watch = RecoveryWatch(stall_s=30)
    watch.stalled(0, True, 151)
    assert not watch.stalled(25, True, 150)  # one record read
    assert not watch.stalled(50, True, 150)
    assert watch.stalled(55, True, 150)


def test_no_stall_outside_recovery_or_with_nothing_left() -> None:
    watch = RecoveryWatch(stall_s=1)
    assert not any(watch.stalled(t, False, 151) for t in range(10))
    assert not any(watch.stalled(t, True, 0) for t in range(10))


def test_a_new_recovery_starts_its_own_clock() -> None:
    watch = RecoveryWatch(stall_s=30)
    watch.stalled(0, True, 151)
    watch.stalled(10, False, 0)  # that recovery ended
    assert not watch.stalled(40, True, 151)  # the next one just began
    assert watch.stalled(70, True, 151)


@given(st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=50))
def test_steady_progress_is_never_a_stall(steps: list[int]) -> None:
    """However slowly, as long as each observation has read something, it never fires."""
    watch = RecoveryWatch(stall_s=3)
    remaining, now = 10_000, 0.0
    for step in steps:
        remaining -= step
        now += 10.0  # far longer than the bound between observations
        assert not watch.stalled(now, True, remaining)
