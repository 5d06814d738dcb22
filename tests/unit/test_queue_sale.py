"""The sale rules of the queue's model (services/queue/model.py): seat facts decide whether the
line is open, paused (every seat held or sold) or sold out (every seat sold; final)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from services.queue.model import (
    SALE_OPEN,
    SALE_PAUSED,
    SALE_SOLD_OUT,
    SEAT_AVAILABLE,
    SEAT_HELD,
    SEAT_SOLD,
    SOLD_OUT_ENTRY,
    Room,
    sale_state,
)
from shared.tokens import TOKEN_ACTIVE, TOKEN_WAITING

SEATS = 4
TIMES = {"ttl_ms": 10_000, "heartbeat_ms": 10_000}
TICK = {"max_active": 100, "ttl_ms": 10_000, "heartbeat_ms": 10_000, "burst": 10, "limit": 100}
facts = st.lists(
    st.tuples(
        st.sampled_from([str(i) for i in range(1, SEATS + 1)]),
        st.sampled_from([SEAT_AVAILABLE, SEAT_HELD, SEAT_SOLD]),
        st.integers(1, 30),
    ),
    max_size=40,
)


def applied(room: Room, seat_facts: list[tuple[str, str, int]]) -> Room:
    for seat, status, version in seat_facts:
        room.seat(seat, status, version, SEATS)
    return room


@given(facts)
def test_the_counts_are_those_of_the_seats_statuses_and_decide_the_sale(
    seat_facts: list[tuple[str, str, int]],
) -> None:
    room = applied(Room(), seat_facts)
    held = sum(s == SEAT_HELD for s, _ in room.seats.values())
    sold = sum(s == SEAT_SOLD for s, _ in room.seats.values())
    assert (int(room.gate.get("nh", 0)), int(room.gate.get("ns", 0))) == (held, sold)
    if seat_facts:
        assert room.sale == sale_state(SEATS, held, sold)


@given(facts, st.randoms())
def test_only_each_seats_latest_version_counts_in_whatever_order_facts_arrive(
    seat_facts: list[tuple[str, str, int]], rnd: random.Random
) -> None:
    latest: dict[str, tuple[int, str]] = {}
    unique = []
    for seat, status, version in seat_facts:  # one fact per (seat, version), as the log has
        if (seat, version) not in {(s, v) for s, _, v in unique}:
            unique.append((seat, status, version))
            if version > latest.get(seat, (0, ""))[0]:
                latest[seat] = (version, status)
    shuffled = unique[:]
    rnd.shuffle(shuffled)
    room = applied(Room(), shuffled + shuffled)  # and every fact twice: replays change nothing
    assert {seat: s for seat, (s, _) in room.seats.items()} == {
        seat: s for seat, (_, s) in latest.items()
    }


def test_sale_states() -> None:
    assert sale_state(4, 1, 2) == SALE_OPEN
    assert sale_state(4, 1, 3) == SALE_PAUSED
    assert sale_state(4, 0, 4) == SALE_SOLD_OUT


def line_of(room: Room, n: int) -> None:
    for i in range(n):
        room.enter(f"u{i}", 1000 + i, **TIMES)


def test_a_paused_sale_admits_nobody_and_a_released_seat_reopens_the_line_in_ticket_order() -> None:
    room = Room()
    line_of(room, 3)
    for seat in range(1, SEATS + 1):
        room.seat(str(seat), SEAT_HELD, 1, SEATS)
    assert room.sale == SALE_PAUSED
    assert room.promote(2000, admit_per_s=1000, **TICK)[0] == 0
    assert room.seat("2", SEAT_AVAILABLE, 2, SEATS) == SALE_OPEN  # a hold lapsed
    assert room.promote(2100, admit_per_s=1000, **TICK)[0] == 3
    assert [room.users[f"u{i}"].state for i in range(3)] == [TOKEN_ACTIVE] * 3


def test_sold_out_refuses_entries_and_admits_nobody_while_fans_keep_their_tokens() -> None:
    room = Room()
    line_of(room, 2)
    for seat in range(1, SEATS + 1):
        room.seat(str(seat), SEAT_SOLD, 1, SEATS)
    assert room.sale == SALE_SOLD_OUT
    assert room.enter("late", 3000, **TIMES)[0] == SOLD_OUT_ENTRY
    assert "late" not in room.users
    assert room.promote(3000, admit_per_s=1000, **TICK)[0] == 0
    assert room.users["u0"].state == TOKEN_WAITING  # told sold out by the queue, not dropped


def test_a_concert_missing_from_the_catalog_keeps_its_sale_state() -> None:
    room = Room()
    room.seat("1", SEAT_SOLD, 1, None)
    assert room.sale == SALE_OPEN and room.gate["ns"] == "1"
