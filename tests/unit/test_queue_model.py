"""The waiting room's rules (services/queue/model.py), property-tested on random sequences of
entries, touches, admission ticks, completions and the passing of time. That the Lua scripts
do the same is tests/integration/test_queue_model_vs_redis.py."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.queue.model import KEPT, Room
from shared.tokens import (
    SUPERSEDED,
    TOKEN_ACTIVE,
    TOKEN_COMPLETED,
    TOKEN_WAITING,
    UNKNOWN,
)

TIMES = {"ttl_ms": 40, "heartbeat_ms": 60}
USERS = ["a", "b", "c", "d"]

steps = st.lists(
    st.one_of(
        st.tuples(st.just("enter"), st.sampled_from(USERS)),
        st.tuples(st.just("touch"), st.sampled_from(USERS), st.booleans()),
        st.tuples(st.just("promote"), st.integers(0, 5), st.integers(0, 5), st.integers(1, 3)),
        st.tuples(st.just("complete"), st.sampled_from(USERS)),
        st.tuples(st.just("wait"), st.integers(0, 80)),
    ),
    max_size=40,
)


def play(room: Room, now: int, step: tuple[Any, ...]) -> tuple[int, Any]:
    """Apply one step at `now`; (the clock after it, its answer)."""
    kind = step[0]
    if kind == "enter":
        return now, room.enter(step[1], now, **TIMES)
    if kind == "touch":
        token = room.users.get(step[1])
        return now, room.touch(step[1], token.ticket if token else 1, now, renew=step[2], **TIMES)
    if kind == "promote":
        tick = {"burst": step[1], "max_active": step[2], "limit": step[3]}
        return now, room.promote(now, admit_per_s=100.0, **TIMES, **tick)
    if kind == "complete":
        token = room.users.get(step[1])
        return now, room.complete(step[1], token.ticket if token else 1)
    return now + step[1], None


class TestAdmission:
    @given(steps)
    def test_is_first_come_first_served(self, sequence: list[tuple[Any, ...]]) -> None:
        room, now = Room(), 1_000
        for step in sequence:
            waiting_before = dict(room.waiting)
            now, _ = play(room, now, step)
            if step[0] == "promote":
                admitted = [u for u in waiting_before if room.users[u].state == TOKEN_ACTIVE]
                still = [t for u, t in room.waiting.items()]
                assert all(waiting_before[u] < t for u in admitted for t in still)

    @given(steps)
    def test_never_fills_more_active_places_than_allowed_or_more_than_the_limit(
        self, sequence: list[tuple[Any, ...]]
    ) -> None:
        room, now = Room(), 1_000
        for step in sequence:
            active_before = len(room.active)
            now, answer = play(room, now, step)
            if step[0] == "promote" and answer[0] > 0:
                _, burst, max_active, limit = step
                assert answer[0] <= min(burst, limit)
                assert len(room.active) <= max(max_active, active_before)

    @given(steps)
    def test_keeps_every_waiting_fan_behind_the_frontier(
        self, sequence: list[tuple[Any, ...]]
    ) -> None:
        room, now = Room(), 1_000
        for step in sequence:
            now, _ = play(room, now, step)
            if step[0] == "promote" and room.seq:
                frontier = int(room.gate["f"])
                assert all(t > frontier for t in room.waiting.values())  # position >= 1


class TestTokens:
    @given(steps)
    def test_each_user_holds_one_token_in_the_line_and_tickets_only_grow(
        self, sequence: list[tuple[Any, ...]]
    ) -> None:
        room, now, last_ticket = Room(), 1_000, 0
        for step in sequence:
            now, answer = play(room, now, step)
            assert set(room.waiting) == set(room.heartbeat)
            assert not set(room.waiting) & set(room.active)
            if step[0] == "enter" and answer[0] == 1:
                assert answer[1] == last_ticket + 1
                last_ticket = answer[1]

    def test_entering_again_while_alive_answers_the_same_place(self) -> None:
        room = Room()
        first = room.enter("a", 1_000, **TIMES)
        again = room.enter("a", 1_050, **TIMES)
        assert (first[0], again[0], again[1]) == (1, 0, first[1])

    def test_a_waiter_who_stops_polling_loses_the_place_and_a_new_entry_goes_to_the_back(
        self,
    ) -> None:
        room = Room()
        room.enter("a", 1_000, **TIMES)
        room.enter("b", 1_000, **TIMES)
        later = room.enter("a", 1_000 + TIMES["heartbeat_ms"] + 1, **TIMES)
        assert later[0] == 1 and later[1] == 3  # behind b

    def test_completing_is_idempotent_and_an_old_ticket_is_told_it_was_superseded(self) -> None:
        room = Room()
        room.enter("a", 1_000, **TIMES)
        assert room.complete("a", 1) == TOKEN_WAITING
        assert room.complete("a", 1) == TOKEN_COMPLETED
        assert room.complete("a", 2) == SUPERSEDED
        assert room.complete("zz", 1) == UNKNOWN

    def test_a_buyer_keeps_the_token_while_any_other_hold_is_open(self) -> None:
        room = Room()
        room.enter("a", 1_000, **TIMES)
        assert room.complete_if_settled("a", 1, holds=[5_000, 500], now=2_000) == KEPT
        assert room.users["a"].state == TOKEN_WAITING
        assert room.complete_if_settled("a", 1, holds=[500], now=2_000) == TOKEN_WAITING
        assert room.users["a"].state == TOKEN_COMPLETED


def test_an_admitted_fan_gets_a_first_grace_to_check_in_between_two_polls() -> None:
    room = Room()
    room.enter("a", 0, **TIMES)
    tick = {"max_active": 5, "burst": 5, "limit": 5}
    room.promote(10, admit_per_s=1000, **TIMES, **tick, first_grace_ms=500)
    assert room.active["a"] == 10 + TIMES["ttl_ms"] + 500
    # Once the fan checks in, renewals run on the plain time to live again.
    room.touch("a", 1, 20, **TIMES, renew=True)
    assert room.active["a"] == 20 + TIMES["ttl_ms"]
