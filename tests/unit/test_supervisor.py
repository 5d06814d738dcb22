from infra.supervisor import FIRST_DELAY_S, MAX_DELAY_S, STABLE_AFTER_S, Backoff


class TestBackoff:
    def test_a_process_that_keeps_crashing_waits_twice_as_long_each_time_up_to_the_cap(
        self,
    ) -> None:
        backoff = Backoff(started_at=0.0)
        delays = [backoff.on_exit(now=1.0) for _ in range(10)]
        assert delays[:3] == [FIRST_DELAY_S, 2 * FIRST_DELAY_S, 4 * FIRST_DELAY_S]
        assert delays == sorted(delays) and max(delays) == MAX_DELAY_S

    def test_a_process_that_ran_long_enough_before_dying_starts_afresh(self) -> None:
        backoff = Backoff(started_at=0.0)
        for _ in range(5):
            backoff.on_exit(now=1.0)
        backoff.started_at = 100.0
        assert backoff.on_exit(now=100.0 + STABLE_AFTER_S) == FIRST_DELAY_S
