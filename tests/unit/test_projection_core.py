"""The seat map read model's pure fold: pytest tests/unit/test_projection_core.py"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.seat_projection.core import (
    AVAILABLE,
    HELD,
    SOLD,
    Changes,
    Counts,
    SeatView,
    StatusIndex,
    apply,
)
from services.seat_projection.core import fold as fold_batch
from shared.events import (
    ConcertCreated,
    Message,
    ReservationRejected,
    SeatConfirmed,
    SeatHeld,
    SeatReleased,
    utc_iso,
)

CONCERT = "c1"
T0 = 1_790_000_000_000
SeatFact = SeatHeld | SeatReleased | SeatConfirmed


def _about(seat_id: str, version: int) -> dict[str, str]:
    return {
        "event_id": f"{seat_id}:{version}",
        "occurred_at": utc_iso(T0 + version),
        "reservation_id": f"r-{seat_id}-{version}",
        "concert_id": CONCERT,
        "seat_id": seat_id,
        "user_id": "u1",
    }


def held(seat_id: str, version: int) -> SeatHeld:
    return SeatHeld(**_about(seat_id, version), hold_expires_at_ms=T0 + 60_000, version=version)


def released(seat_id: str, version: int) -> SeatReleased:
    return SeatReleased(**_about(seat_id, version), reason="hold_expired", version=version)


def confirmed(seat_id: str, version: int) -> SeatConfirmed:
    return SeatConfirmed(
        **_about(seat_id, version), payment_id="p1", queue_ticket=version, version=version
    )


def changed(seat: SeatView, counts: Counts, fact: Message) -> tuple[SeatView, Counts]:
    result = apply(seat, counts, fact)
    assert result is not None, fact
    return result


class TestHoldingASeat:
    def test_moves_one_seat_from_available_to_held(self) -> None:
        seat, counts = changed(SeatView(), Counts(seats=10), held("s1", 1))
        assert seat == SeatView(HELD, 1)
        assert (counts.held, counts.sold, counts.available) == (1, 0, 9)


class TestConfirmingASeat:
    def test_moves_one_seat_from_held_to_sold(self) -> None:
        seat, counts = changed(SeatView(HELD, 1), Counts(seats=10, held=1), confirmed("s1", 2))
        assert seat == SeatView(SOLD, 2)
        assert (counts.held, counts.sold, counts.available) == (0, 1, 9)

    def test_counts_a_seat_whose_hold_was_not_seen_yet_as_sold_only(self) -> None:
        seat, counts = changed(SeatView(), Counts(seats=10), confirmed("s1", 2))
        assert seat == SeatView(SOLD, 2)
        assert (counts.held, counts.sold, counts.available) == (0, 1, 9)


class TestReleasingASeat:
    def test_moves_one_seat_from_held_back_to_available(self) -> None:
        seat, counts = changed(SeatView(HELD, 1), Counts(seats=10, held=1), released("s1", 2))
        assert seat == SeatView(AVAILABLE, 2)
        assert (counts.held, counts.sold, counts.available) == (0, 0, 10)


class TestStaleAndDuplicateFacts:
    def test_a_redelivered_fact_changes_nothing(self) -> None:
        assert apply(SeatView(HELD, 1), Counts(seats=10, held=1), held("s1", 1)) is None

    def test_a_fact_older_than_the_view_changes_nothing(self) -> None:
        assert apply(SeatView(SOLD, 2), Counts(seats=10, sold=1), held("s1", 1)) is None

    def test_a_newer_fact_applies_even_after_a_gap(self) -> None:
        seat, counts = changed(SeatView(HELD, 1), Counts(seats=10, held=1), held("s1", 3))
        assert seat == SeatView(HELD, 3) and counts.held == 1


class TestMessagesThatAreNotSeatFacts:
    def test_change_no_seat(self) -> None:
        rejected = ReservationRejected(**_about("s1", 1), reason="seat_taken")
        created = ConcertCreated(
            event_id="e1", occurred_at=utc_iso(T0), concert_id=CONCERT, seats=10, price=5
        )
        for m in (rejected, created):
            assert apply(SeatView(), Counts(seats=10), m) is None


class TestAvailableSeats:
    def test_are_the_seats_neither_held_nor_sold(self) -> None:
        assert Counts(seats=10, held=3, sold=4).available == 3

    def test_are_never_counted_below_zero(self) -> None:
        # facts of a concert may arrive before its ConcertCreated sets the seat count
        assert Counts(seats=0, held=1, sold=1).available == 0


# --- property: arrival order across topics does not matter ---------------------------------------

SEATS = ("s0", "s1", "s2", "s3")
STATUS_OF: dict[type[SeatFact], str] = {
    SeatHeld: HELD,
    SeatReleased: AVAILABLE,
    SeatConfirmed: SOLD,
}


@st.composite
def seat_histories(draw: st.DrawFn) -> list[SeatFact]:
    """Each seat's facts as its single writer emits them, versions 1, 2, ...; seats interleaved."""
    per_seat: list[list[SeatFact]] = []
    for seat_id in SEATS:
        facts: list[SeatFact] = []
        status = AVAILABLE
        for release in draw(st.lists(st.booleans(), max_size=8)):
            v = len(facts) + 1
            if status == AVAILABLE:
                facts.append(held(seat_id, v))
                status = HELD
            elif release:
                facts.append(released(seat_id, v))
                status = AVAILABLE
            else:
                facts.append(confirmed(seat_id, v))
                break
        per_seat.append(facts)
    # interleave the seats, each seat's facts in order (one writer, one partition)
    order = draw(st.permutations([i for i, facts in enumerate(per_seat) for _ in facts]))
    cursors = [0] * len(per_seat)
    history = []
    for i in order:
        history.append(per_seat[i][cursors[i]])
        cursors[i] += 1
    return history


def fold(facts: list[SeatFact]) -> tuple[dict[str, SeatView], Counts, int]:
    """Views, counts and how many facts changed something; counts checked at every step."""
    views: dict[str, SeatView] = {}
    counts = Counts(seats=len(SEATS))
    applied = 0
    for fact in facts:
        result = apply(views.get(fact.seat_id, SeatView()), counts, fact)
        if result is not None:
            views[fact.seat_id], counts = result
            applied += 1
        statuses = [v.status for v in views.values()]
        assert (counts.held, counts.sold) == (statuses.count(HELD), statuses.count(SOLD))
    return views, counts, applied


@st.composite
def history_and_arrival(draw: st.DrawFn) -> tuple[list[SeatFact], list[SeatFact]]:
    """A valid history, and its facts as they may arrive: any order, some more than once."""
    history = draw(seat_histories())
    again = draw(st.lists(st.sampled_from(history), max_size=6)) if history else []
    return history, draw(st.permutations(history + again))


class TestFactsArrivingOutOfOrder:
    @settings(max_examples=300, deadline=None)
    @given(history_and_arrival())
    def test_end_in_the_state_of_the_in_order_fold(
        self, case: tuple[list[SeatFact], list[SeatFact]]
    ) -> None:
        history, arrival = case
        in_order, in_order_counts, applied = fold(history)
        assert applied == len(history)  # in order, every fact is news
        shuffled, shuffled_counts, _ = fold(arrival)
        assert shuffled == in_order
        assert shuffled_counts == in_order_counts

    @settings(max_examples=300, deadline=None)
    @given(history_and_arrival())
    def test_show_each_seat_as_its_newest_fact_says(
        self, case: tuple[list[SeatFact], list[SeatFact]]
    ) -> None:
        history, arrival = case
        views, _, _ = fold(arrival)
        for seat_id in SEATS:
            facts = [f for f in history if f.seat_id == seat_id]
            if not facts:
                assert seat_id not in views
                continue
            newest = max(facts, key=lambda f: f.version)
            assert views[seat_id] == SeatView(STATUS_OF[type(newest)], newest.version)


def in_batches(facts: list[Message], sizes: list[int]) -> tuple[dict[str, SeatView], Counts]:
    """The map after folding `facts` batch by batch, each batch written at its end."""
    seats: dict[str, SeatView] = {}
    counts: dict[str, Counts] = {}
    start = 0
    for size in [*sizes, len(facts)]:
        batch = facts[start : start + size]
        start += size
        out: Changes = fold_batch(
            batch, lambda k: seats.get(k, SeatView()), lambda c: counts.get(c, Counts())
        )
        seats.update(out.seats)
        counts.update(out.counts)
    return {k.split("|")[1]: v for k, v in seats.items()}, counts.get(CONCERT, Counts())


class TestFoldingABatch:
    @settings(max_examples=200, deadline=None)
    @given(history_and_arrival(), st.lists(st.integers(1, 6), max_size=8))
    def test_ends_where_folding_one_fact_at_a_time_does(
        self, case: tuple[list[SeatFact], list[SeatFact]], sizes: list[int]
    ) -> None:
        _, arrival = case
        created = ConcertCreated(
            event_id="concert:c1",
            occurred_at=utc_iso(T0),
            concert_id=CONCERT,
            seats=len(SEATS),
            price=1,
        )
        one_by_one, counts, _ = fold(arrival)
        views, batched_counts = in_batches([created, *arrival], sizes)
        assert views == one_by_one
        assert batched_counts == counts

    def test_writes_a_seat_changed_twice_once(self) -> None:
        out = fold_batch(
            [held("s1", 1), confirmed("s1", 2), held("s1", 1)],
            lambda _: SeatView(),
            lambda _: Counts(seats=4),
        )
        assert out.seats == {f"{CONCERT}|s1": SeatView(SOLD, 2)}
        assert out.counts == {CONCERT: Counts(seats=4, sold=1)} and out.ignored == 1


# --- paging through the index ----------------------------------------------------------------

maps = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        st.just(n), st.lists(st.sampled_from([AVAILABLE, HELD, SOLD]), min_size=n, max_size=n)
    )
)


def indexed(seats: list[str]) -> StatusIndex:
    index = StatusIndex()
    for n, status in enumerate(seats, start=1):
        index.set("c", n, status)
    return index


class TestPagingThroughTheIndex:
    @given(
        maps, st.sampled_from([None, AVAILABLE, HELD, SOLD]), st.integers(1, 9), st.integers(1, 12)
    )
    def test_following_next_after_lists_every_matching_seat_once_in_order(
        self, seat_map: tuple[int, list[str]], status: str | None, limit: int, max_scan: int
    ) -> None:
        n, seats = seat_map
        index, after, seen, pages = indexed(seats), 0, [], 0
        while after is not None:
            page, next_after = index.page("c", n, status, after, limit, max_scan)
            assert len(page) <= limit
            assert next_after is None or next_after > after  # every page moves on
            seen += page
            after, pages = next_after, pages + 1
            assert pages <= n + 1
        expected = [(i, s) for i, s in enumerate(seats, 1) if status is None or s == status]
        assert seen == expected

    @given(maps)
    def test_rebuilt_from_the_table_it_equals_the_index_kept_change_by_change(
        self, seat_map: tuple[int, list[str]]
    ) -> None:
        _, seats = seat_map
        table = [(f"c|{i}", SeatView(s, 1)) for i, s in enumerate(seats, 1) if s != AVAILABLE]
        assert StatusIndex.of(table) == indexed(seats)

    def test_a_seat_that_changes_status_moves_between_the_lists(self) -> None:
        index = StatusIndex()
        index.set("c", 5, HELD)
        index.set("c", 5, SOLD)
        index.set("c", 7, HELD)
        index.set("c", 7, AVAILABLE)
        assert index.by_concert["c"] == {HELD: [], SOLD: [5]}

    def test_an_available_seat_of_a_concert_with_none_held_or_sold_adds_no_entry(self) -> None:
        index = StatusIndex()
        index.set("c", 1, AVAILABLE)
        assert index.by_concert == {}
