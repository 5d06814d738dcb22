from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.queue.core import (
    MAX_POLL_MS,
    MIN_POLL_MS,
    SHED_GRACE,
    Observed,
    RateLimiter,
    Shedding,
    eta_seconds,
    poll_after_ms,
    position,
)
from services.queue.views import token_view  # the HTTP shell's view of what the core computes
from shared.tokens import TOKEN_ACTIVE, TOKEN_WAITING, TokenClaims


class TestPosition:
    def test_is_the_distance_from_the_admission_frontier(self) -> None:
        assert position(ticket=105, frontier=100) == 5

    def test_is_never_below_one(self) -> None:
        assert position(ticket=3, frontier=10) == 1


class TestEta:
    def test_is_a_range_around_position_over_the_measured_rate(self) -> None:
        low, high = eta_seconds(1000, measured_rate=100, configured_rate=5) or [0, 0]
        assert low <= 10 <= high and low < high

    def test_falls_back_to_the_configured_rate_before_anything_was_measured(self) -> None:
        assert eta_seconds(100, measured_rate=0, configured_rate=10) == [7, 13]

    def test_is_unknown_while_the_gate_is_closed(self) -> None:
        assert eta_seconds(100, measured_rate=0, configured_rate=0) is None

    def test_is_ten_percent_either_side_once_the_measured_rate_has_settled(self) -> None:
        assert eta_seconds(1000, measured_rate=100, configured_rate=100) == [9, 11]

    @given(
        st.integers(1, 10**6),
        st.floats(1, 10**4),
        st.floats(0.02, 0.99),  # a rate was measured (above 0.01/s)
        st.floats(0.01, 0.99),
    )
    def test_narrows_as_the_measured_rate_settles_on_the_set_one(
        self, pos: int, target: float, far: float, near_share: float
    ) -> None:
        """The closer the measured rate comes to the target, the narrower the range, and it
        always holds both paces' ETAs."""
        near = far + (1 - far) * near_share  # a measured rate closer to the target than `far`
        wide = eta_seconds(pos, measured_rate=target * far, configured_rate=target)
        narrow = eta_seconds(pos, measured_rate=target * near, configured_rate=target)
        assert wide is not None and narrow is not None
        assert narrow[1] - narrow[0] <= wide[1] - wide[0]
        for (low, high), measured in ((wide, target * far), (narrow, target * near)):
            assert low <= pos / target and pos / measured <= high


class TestPollAfter:
    @given(st.integers(1, 10**7), st.floats(0, 10**5), st.integers(1, 10**9))
    def test_stays_within_bounds_and_inside_the_heartbeat(
        self, pos: int, rate: float, ticket: int
    ) -> None:
        ms = poll_after_ms(
            TOKEN_WAITING, pos, rate, heartbeat_ms=60_000, active_ttl_ms=30_000, ticket=ticket
        )
        assert MIN_POLL_MS <= ms <= min(MAX_POLL_MS, 20_000)

    def test_grows_with_distance_from_the_front(self) -> None:
        near = poll_after_ms(TOKEN_WAITING, 10, 100, heartbeat_ms=60_000, active_ttl_ms=1, ticket=7)
        far = poll_after_ms(
            TOKEN_WAITING, 5000, 100, heartbeat_ms=60_000, active_ttl_ms=1, ticket=7
        )
        assert near < far

    def test_an_active_token_is_asked_to_come_back_before_it_expires(self) -> None:
        ms = poll_after_ms(
            TOKEN_ACTIVE, None, 0, heartbeat_ms=60_000, active_ttl_ms=30_000, ticket=1
        )
        assert ms <= 10_000


class TestTokenView:
    claims = TokenClaims("c", "u", 50, 0)

    def test_waiting_view_has_position_eta_and_heartbeat_deadline(self) -> None:
        seen = Observed(TOKEN_WAITING, 0, frontier=40, measured_rate=2.0, now_ms=1_000)
        view = token_view(
            "t", self.claims, seen, configured_rate=5, heartbeat_ms=60_000, active_ttl_ms=30_000
        )
        assert view["status"] == "waiting" and view["position"] == 10
        assert view["eta_seconds"] == [1, 6]  # 10 places at 2/s measured, 5/s set: unsettled
        assert view["expires_at"] == "1970-01-01T00:01:01.000+00:00"

    def test_active_view_has_no_position_and_expires_at_the_deadline(self) -> None:
        seen = Observed(TOKEN_ACTIVE, 31_000, 0, 0.0, now_ms=1_000)
        view = token_view(
            "t", self.claims, seen, configured_rate=5, heartbeat_ms=60_000, active_ttl_ms=30_000
        )
        assert view["status"] == "active" and view["position"] is None
        assert view["eta_seconds"] is None
        assert view["expires_at"] == "1970-01-01T00:00:31.000+00:00"

    def waiting_view(self, sale: str) -> dict[str, Any]:
        seen = Observed(TOKEN_WAITING, 0, 40, 5.0, now_ms=1_000)
        return token_view(
            "t",
            self.claims,
            seen,
            configured_rate=5,
            heartbeat_ms=60_000,
            active_ttl_ms=30_000,
            sale=sale,
        )

    def test_a_waiter_of_a_sold_out_concert_gets_a_final_answer_and_no_more_polls(self) -> None:
        view = self.waiting_view("sold_out")
        assert view["status"] == "sold_out" and "Sold out" in view["message"]
        assert view["position"] is None and view["poll_after_ms"] is None

    def test_a_waiter_while_paused_keeps_the_place_with_no_eta_and_is_told_why(self) -> None:
        view = self.waiting_view("paused")
        assert view["status"] == "waiting" and view["position"] == 10
        assert view["eta_seconds"] is None and view["sale"] == "paused"
        assert "come back" in view["message"]


class TestRateLimiter:
    def test_allows_a_burst_then_asks_to_wait(self) -> None:
        limiter = RateLimiter(2, burst=3)
        assert [limiter.retry_after("k", 0.0) for _ in range(3)] == [0, 0, 0]
        assert limiter.retry_after("k", 0.0) == 0.5

    def test_refills_over_time(self) -> None:
        limiter = RateLimiter(2, burst=1)
        assert limiter.retry_after("k", 0.0) == 0
        assert limiter.retry_after("k", 0.1) > 0
        assert limiter.retry_after("k", 1.0) == 0

    def test_keys_are_independent(self) -> None:
        limiter = RateLimiter(1, burst=1)
        assert limiter.retry_after("a", 0.0) == 0 and limiter.retry_after("b", 0.0) == 0

    def test_zero_rate_disables_the_limit(self) -> None:
        limiter = RateLimiter(0)
        assert all(limiter.retry_after("k", 0.0) == 0 for _ in range(1000))

    def test_memory_stays_bounded(self) -> None:
        limiter = RateLimiter(1, max_keys=10)
        for i in range(100):
            limiter.retry_after(str(i), 0.0)
        assert len(limiter._buckets) == 10


class TestShedding:
    @given(st.integers(1, 600_000), st.integers(0, 10**9))
    def test_without_a_refusal_the_heartbeat_is_the_drop_window(self, hb: int, now: int) -> None:
        assert Shedding().drop_after_ms(hb, now) == hb

    @given(st.integers(1, 600_000), st.integers(0, 10**9), st.integers(0, 10**6))
    def test_a_refusal_within_the_last_heartbeat_widens_it_and_an_older_one_does_not(
        self, hb: int, at: int, later: int
    ) -> None:
        s = Shedding()
        s.mark(at)
        window = s.drop_after_ms(hb, at + later)
        assert window == (hb * SHED_GRACE if later <= hb else hb)
        assert window >= hb
