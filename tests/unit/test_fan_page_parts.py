"""The pure parts behind the fan's page: its language, the dev gateway's routes, and the push
registry's bookkeeping (services/queue/push.py) with a recording stand-in for the store."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from infra.gateway import route
from services.queue.page import language
from services.queue.push import Push, news
from services.queue.store import Gate, QueueStore
from shared.tokens import TokenClaims


class TestLanguage:
    def test_korean_first_gets_korean(self) -> None:
        assert language("ko-KR,ko;q=0.9,en-US;q=0.8") == "ko"

    def test_weights_win_over_order(self) -> None:
        assert language("ko;q=0.3, en;q=0.9") == "en"

    def test_a_language_the_page_lacks_falls_through_to_the_next(self) -> None:
        assert language("ja-JP, ko;q=0.5") == "ko"

    def test_nothing_usable_means_english(self) -> None:
        assert language("") == "en"
        assert language("fr, de;q=0.5") == "en"
        assert language("ko;q=0") == "en"  # q=0: "not this one"

    @given(st.text(max_size=80))
    def test_any_header_gives_one_of_the_pages_languages(self, header: str) -> None:
        assert language(header) in ("ko", "en")


STYLE = (Path(__file__).parents[2] / "services" / "queue" / "page" / "style.css").read_text()


def colour(name_or_hex: str) -> tuple[float, float, float]:
    """A colour of the page's palette (`--name`) or a #rrggbb literal, as linear RGB."""
    if name_or_hex.startswith("--"):
        found = re.search(rf"{name_or_hex}:\s*(#[0-9a-fA-F]{{6}})", STYLE)
        assert found, name_or_hex
        name_or_hex = found.group(1)
    channels = [int(name_or_hex[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return lin[0], lin[1], lin[2]


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio."""
    la, lb = (0.2126 * r + 0.7152 * g + 0.0722 * b_ for r, g, b_ in (colour(a), colour(b)))
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


class TestContrast:
    """Every text colour on its background, as style.css pairs them: at least 4.5:1 (AA)."""

    PAIRS = (
        ("--ink", "--paper"),
        ("--muted", "--paper"),
        ("--warn", "--paper"),
        ("--error", "--paper"),
        ("--free", "--paper"),  # an available seat
        ("--held", "#fff4e5"),  # a held seat
        ("--sold", "#eeeeee"),  # a sold seat
        ("#ffffff", "--accent"),  # a button's label
        ("--accent", "#ffffff"),  # the language switch's other button
    )

    def test_every_text_colour_meets_aa_on_its_background(self) -> None:
        for text, background in self.PAIRS:
            assert contrast(text, background) >= 4.5, (text, background)

    def test_the_check_itself_can_fail(self) -> None:
        assert contrast("#777777", "#ffffff") < 4.5  # the classic light grey


class TestGatewayRoutes:
    """The same prefixes as the k8s Ingress (infra/k8s/network.yaml)."""

    def test_reservations_go_to_the_reservation_service(self) -> None:
        assert route("POST", "/v1/reservations") == "reservation"
        assert route("GET", "/v1/reservations/r-1/events") == "reservation"

    def test_the_seat_map_goes_to_the_projection_but_creating_concerts_does_not(self) -> None:
        assert route("GET", "/v1/concerts/demo/seats") == "seat_projection"
        assert route("POST", "/v1/concerts/") == "queue"  # not routed to the admin API

    def test_the_page_and_the_line_go_to_the_queue(self) -> None:
        for path in ("/", "/page/app.js", "/v1/queue/tokens", "/v1/queue/tokens/t/events"):
            assert route("GET", path) == "queue"


class RecordingStore:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []

    async def watch(self, concert_id: str, renew: list[str]) -> Gate:
        self.calls.append((concert_id, renew))
        return Gate(frontier=len(self.calls), measured_rate=1.0, sale="open", now_ms=0)


def claims(concert: str, user: str, ticket: int) -> TokenClaims:
    return TokenClaims(concert, user, ticket, 0)


class TestPushRegistry:
    async def test_one_read_per_concert_reaches_every_watcher_of_it(self) -> None:
        store = RecordingStore()
        push = Push(cast(QueueStore, store), every_s=0.1, renew_every_s=10)
        with (
            push.watching(claims("a", "u1", 5)) as w1,
            push.watching(claims("a", "u2", 6)) as w2,
            push.watching(claims("b", "u3", 1)) as w3,
        ):
            await push.tick(now=100.0)
            assert sorted(c for c, _ in store.calls) == ["a", "b"]
            for w in (w1, w2, w3):
                assert await w.next(0.01) is not None
        assert push.rooms == {} and push.watching_count == 0

    async def test_heartbeats_are_renewed_only_every_renew_interval(self) -> None:
        store = RecordingStore()
        push = Push(cast(QueueStore, store), every_s=0.1, renew_every_s=10)
        with push.watching(claims("a", "u1", 5)), push.watching(claims("a", "u2", 6)):
            for now in (100.0, 101.0, 109.0, 110.0):
                await push.tick(now)
        assert [r for _, r in store.calls] == [["u1", "u2"], [], [], ["u1", "u2"]]

    async def test_many_heartbeats_are_renewed_in_slices(self) -> None:
        store = RecordingStore()
        push = Push(cast(QueueStore, store), every_s=0.1, renew_every_s=10)
        with contextlib.ExitStack() as open_streams:
            for i in range(4500):
                open_streams.enter_context(push.watching(claims("a", f"u{i:04d}", i + 10)))
            await push.tick(100.0)
        assert [len(r) for _, r in store.calls] == [2000, 2000, 500]
        assert len({u for _, r in store.calls for u in r}) == 4500

    async def test_a_fan_far_back_is_woken_when_due_or_at_once_for_news(self) -> None:
        store = RecordingStore()  # its n-th read has the front at n
        push = Push(cast(QueueStore, store), every_s=0.1, renew_every_s=10)
        with (
            push.watching(claims("a", "near", 3)) as near,
            push.watching(claims("a", "far", 900)) as far,
        ):
            near.due = far.due = 150.0
            await push.tick(100.0)  # read 1: nothing due, nobody at the front
            assert not near.arrived.is_set() and not far.arrived.is_set()
            await push.tick(100.1)
            await push.tick(100.2)  # read 3: the front reached ticket 3
            assert near.arrived.is_set() and not far.arrived.is_set()
            await push.tick(150.0)  # far's routine update is due
            assert far.arrived.is_set()

    async def test_a_change_of_sale_wakes_everyone(self) -> None:
        store = RecordingStore()
        push = Push(cast(QueueStore, store), every_s=0.1, renew_every_s=10)
        sales = iter(["open", "open", "sold_out"])

        async def watch(concert_id: str, renew: list[str]) -> Gate:
            return Gate(frontier=0, measured_rate=0.0, sale=next(sales), now_ms=0)

        store.watch = watch  # type: ignore[method-assign]
        with push.watching(claims("a", "far", 900)) as far:
            far.due = 1e9
            await push.tick(1.0)
            await push.tick(2.0)
            assert not far.arrived.is_set()
            await push.tick(3.0)
            assert far.arrived.is_set() and far.gate is not None and far.gate.sale == "sold_out"

    async def test_closing_wakes_every_stream(self) -> None:
        push = Push(cast(QueueStore, RecordingStore()), every_s=0.1, renew_every_s=10)
        with push.watching(claims("a", "u1", 5)) as w:
            waiting = asyncio.create_task(w.next(5.0))
            await asyncio.sleep(0)
            push.close()
            await asyncio.wait_for(waiting, 1.0)
            assert push.closing

    def test_only_what_a_fan_sees_change_is_news(self) -> None:
        view: dict[str, Any] = {"status": "waiting", "position": 4, "eta_seconds": [2, 3]}
        later = {**view, "expires_at": "x", "poll_after_ms": 900}
        assert news(view) == news(later)
        assert news(view) != news({**view, "position": 3})
