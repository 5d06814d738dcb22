"""The reservation API's answers on the running pipeline: bad input and wrong tokens get clear
4xx errors, the hold limit per fan, and the seat map's pages."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.pipeline import (
    ADMIN_TOKEN,
    Pipeline,
    buyers,
    reserve_ok,
)
from tests.support.queue import eventually

pytestmark = pytest.mark.slow


class TestReservationApi:
    async def test_bad_input_and_wrong_tokens_get_clear_4xx_errors(
        self, default_pipeline: Pipeline
    ) -> None:
        p = default_pipeline
        concert = await p.create_concert(seats=10)
        (user, token), (other, other_token) = await buyers(p, concert, 2)

        async def reserve_error(body: Any, headers: dict[str, str]) -> tuple[int, str]:
            kw: dict[str, Any] = {"headers": headers}
            kw["data" if isinstance(body, bytes) else "json"] = body
            status, answer = await p.call("POST", "reservation", "/v1/reservations", **kw)
            return status, answer["error"]["code"]

        auth = {"Queue-Token": token}
        good = {"concert_id": concert, "seat_id": "1", "user_id": user}
        assert await reserve_error(b"{nope", auth) == (400, "invalid_request")
        assert await reserve_error({**good, "seat_id": 7}, auth) == (400, "invalid_request")
        assert await reserve_error({**good, "concert_id": "nope"}, auth) == (404, "not_found")
        for seat in ("0", "11", "01", "abc"):
            assert await reserve_error({**good, "seat_id": seat}, auth) == (404, "not_found")
        assert await reserve_error(good, {}) == (401, "invalid_token")
        assert await reserve_error(good, {"Queue-Token": token + "x"}) == (401, "invalid_token")
        assert await reserve_error(good, {"Queue-Token": other_token}) == (403, "token_mismatch")

        rid = await reserve_ok(p, token, concert, "1", user)
        for path, code in (
            (f"/v1/reservations/{rid}?wait_ms=99999", 400),
            (f"/v1/reservations/{rid}?seen=nothing", 400),
            (f"/v1/reservations/{rid[:-2]}xx", 404),
            ("/v1/reservations/made-up", 404),
        ):
            assert (await p.call("GET", "reservation", path, headers=auth))[0] == code, path
        # Only the fan who reserved may look the reservation up.
        lookup = f"/v1/reservations/{rid}"
        status, answer = await p.call(
            "GET", "reservation", lookup, headers={"Queue-Token": other_token}
        )
        assert (status, answer["error"]["code"]) == (403, "forbidden")
        status, answer = await p.call("GET", "reservation", lookup)
        assert (status, answer["error"]["code"]) == (401, "invalid_token")
        assert (await p.call("GET", "reservation", lookup, headers=auth))[0] == 200
        status, answer = await p.pay(other_token, rid, other)
        assert (status, answer["error"]["code"]) == (403, "forbidden")

        status, answer = await p.call(
            "POST", "reservation", "/v1/concerts", json={"concert_id": "x", "seats": 5, "price": 1}
        )
        assert (status, answer["error"]["code"]) == (401, "unauthorized")
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        for bad in (
            {"concert_id": "y", "seats": 0, "price": 1},
            {"concert_id": "y", "seats": 100_001, "price": 1},
            {"concert_id": "y", "seats": 5, "price": -1},
        ):
            status, _ = await p.call("POST", "reservation", "/v1/concerts", json=bad, headers=admin)
            assert status == 400, bad
        status, answer = await p.call(
            "POST",
            "reservation",
            "/v1/concerts",
            json={"concert_id": concert, "seats": 5, "price": 1},
            headers=admin,
        )
        assert (status, answer["error"]["code"]) == (409, "conflict")

        status, answer = await p.call(
            "GET", "seat_projection", f"/v1/concerts/{concert}/seats?status=gone"
        )
        assert status == 400 and answer["error"]["field"] == "status"
        assert (await p.call("GET", "seat_projection", "/v1/concerts/nope/seats"))[0] == 404

    async def test_a_user_may_hold_at_most_four_seats_of_a_concert(
        self, default_pipeline: Pipeline
    ) -> None:
        p = default_pipeline
        concert = await p.create_concert(seats=10)
        ((user, token),) = await buyers(p, concert, 1)
        for seat in ("1", "2", "3", "4"):
            await reserve_ok(p, token, concert, seat, user)
        status, answer = await p.reserve(token, concert, "5", user)
        assert (status, answer["error"]["code"]) == (429, "rate_limited")

    async def test_the_seat_map_pages_through_seats_and_filters_by_status(
        self, default_pipeline: Pipeline
    ) -> None:
        p = default_pipeline
        concert = await p.create_concert(seats=7)
        ((user, token),) = await buyers(p, concert, 1)
        rid = await reserve_ok(p, token, concert, "6", user)
        await p.settled(rid, {"held"})

        async def held_in_map() -> dict[str, Any] | None:
            m = await p.seat_map(concert, status="held")
            return m if m["seats"] else None

        assert (await eventually(held_in_map))["seats"] == [{"seat_id": "6", "status": "held"}]
        first = await p.seat_map(concert, limit="3")
        assert [s["seat_id"] for s in first["seats"]] == ["1", "2", "3"]
        rest = await p.seat_map(concert, limit="10", after=first["next_after"])
        assert [s["seat_id"] for s in rest["seats"]] == ["4", "5", "6", "7"]
        assert rest["next_after"] is None
        assert rest["counts"] == {"available": 6, "held": 1, "sold": 0}

    async def test_query_numbers_are_ascii_digits_and_every_page_moves_on(
        self, default_pipeline: Pipeline
    ) -> None:
        p = default_pipeline
        concert = await p.create_concert(seats=12_000)
        ((user, token),) = await buyers(p, concert, 1)
        rid = await reserve_ok(p, token, concert, "1", user)
        auth = {"Queue-Token": token}
        superscript_two, arabic_indic_three = "%C2%B2", "%D9%A3"
        for digits in (superscript_two, arabic_indic_three, "-1", "1e3", "9" * 12):
            status, body = await p.call(
                "GET", "reservation", f"/v1/reservations/{rid}?wait_ms={digits}", headers=auth
            )
            assert (status, body["error"]["field"]) == (400, "wait_ms"), digits
            status, body = await p.call(
                "POST",
                "reservation",
                f"/v1/reservations?wait_ms={digits}",
                json={"concert_id": concert, "seat_id": "2", "user_id": user},
                headers=auth,
            )
            assert (status, body["error"]["field"]) == (400, "wait_ms"), digits
        seats = f"/v1/concerts/{concert}/seats"
        await eventually(lambda: _map_has(p, concert))
        for query, field in (
            (f"limit={superscript_two}", "limit"),
            (f"after={superscript_two}", "after"),
            (f"after={arabic_indic_three}", "after"),
            ("limit=0", "limit"),
        ):
            status, body = await p.call("GET", "seat_projection", f"{seats}?{query}")
            assert (status, body["error"]["field"]) == (400, field), query
        # A held or sold page reads the index (seat_projection.core.StatusIndex): asking
        # 12,000 seats for the sold ones (none) is answered by one call, never a walk.
        pages, after = [], "0"
        while after is not None:
            page = await p.seat_map(concert, status="sold", after=after, limit="10")
            pages.append(page["seats"])
            assert page["next_after"] is None or int(page["next_after"]) > int(after)
            after = page["next_after"]
        assert pages == [[]]


async def _map_has(p: Pipeline, concert: str) -> bool:
    status, _ = await p.call("GET", "seat_projection", f"/v1/concerts/{concert}/seats?limit=1")
    return status == 200
