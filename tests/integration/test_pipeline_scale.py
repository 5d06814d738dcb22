"""The pipeline grown and pressed, each service its own process on the real Redis and broker: a
second reservation worker, the concert catalog surviving Redis, load shedding while decisions
lag, and a concert selling out and coming back."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.processes import free_port, spawn, stop
from infra.stack import ROOT
from shared.redis_client import create_redis
from tests.support.pipeline import (
    ADMIN_TOKEN,
    TERMINAL,
    Pipeline,
    buyers,
    gather_limited,
    pipeline,
    reserve_ok,
)
from tests.support.queue import eventually, fan
from tests.support.sse import next_event

pytestmark = pytest.mark.slow


class TestScaleOut:
    async def test_two_reservation_workers_split_the_seats_and_answer_for_each_other(
        self, default_pipeline: Pipeline
    ) -> None:
        p = default_pipeline
        second = await asyncio.to_thread(
            p.stack.start_service,
            "reservation",
            port=free_port(),
            extra_env={"FAUST_WORKER_ID": "1"},
        )
        try:
            concert = await p.create_concert(seats=40)
            users = await buyers(p, concert, 40)
            token_of = dict(users)
            rids = await gather_limited(
                [reserve_ok(p, t, concert, str(i + 1), u) for i, (u, t) in enumerate(users)]
            )
            # Ask the second worker about every reservation: it owns only some of the seats.
            first_url, p.urls["reservation"] = p.urls["reservation"], second.url
            try:
                held = await gather_limited([p.settled(r, {"held"}, within=60) for r in rids])
                # Each fan follows their reservation's event stream on the second worker too:
                # for the seats it does not own, each step is a long-poll to the owner.
                streams = [
                    await p.http.get(
                        p.url("reservation", f"/v1/reservations/{o['reservation_id']}/events"),
                        headers={"Queue-Token": token_of[o["user_id"]]},
                    )
                    for o in held
                ]
                for stream in streams:
                    name, first = await next_event(stream)
                    assert (name, first["status"]) == ("status", "held"), first
                await gather_limited(
                    [p.pay(token_of[o["user_id"]], o["reservation_id"], o["user_id"]) for o in held]
                )
                done = await gather_limited([p.settled(r, TERMINAL, within=60) for r in rids])
                for stream in streams:
                    name, last = await next_event(stream)
                    assert (name, last["status"]) == ("status", "confirmed"), last
                    assert await next_event(stream) == ("eof", None)  # final: the stream ends
            finally:
                p.urls["reservation"] = first_url
            assert [o["status"] for o in done] == ["confirmed"] * 40
        finally:
            p.stack.services.remove(second)
            await asyncio.to_thread(stop, second.procs[0])

    async def test_a_second_worker_with_the_same_worker_id_exits_loudly(
        self, default_pipeline: Pipeline
    ) -> None:
        p = default_pipeline
        service = p.service("reservation")
        twin = await asyncio.to_thread(
            spawn,
            [sys.executable, "-m", "services.reservation"],
            env={**service.env, "RESERVATION_PORT": str(free_port())},  # same FAUST_WORKER_ID
            cwd=ROOT,
            log=p.stack.workdir / "logs" / "twin.log",
        )
        code = await asyncio.to_thread(twin.wait, 60)
        log = (p.stack.workdir / "logs" / "twin.log").read_text()
        assert (
            code == 2 and "FAUST_WORKER_ID=0 of reservation is held by another live worker" in log
        )
        assert (await p.call("GET", "reservation", "/readyz"))[0] == 200  # the first one runs on


class TestCatalog:
    async def test_concerts_survive_the_loss_of_redis_because_the_log_is_their_source_of_truth(
        self, default_pipeline: Pipeline, redis_url: str
    ) -> None:
        p = default_pipeline
        concert = await p.create_concert(seats=10, price=250)
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        redis = create_redis(redis_url, socket_timeout=1.0, max_connections=2)
        try:
            await redis.flushall()  # everything Redis held is gone, as after a failover
        finally:
            await redis.aclose()
        await asyncio.to_thread(p.crash, "reservation")  # and no worker remembers it either
        await asyncio.to_thread(p.start, "reservation")

        async def create(seats: int, price: int) -> tuple[int, dict[str, Any]]:
            body = {"concert_id": concert, "seats": seats, "price": price}
            return await p.call("POST", "reservation", "/v1/concerts", json=body, headers=admin)

        assert (await create(seats=200, price=250))[0] == 409  # more seats: refused
        assert (await create(seats=10, price=99))[0] == 409  # another price: refused
        status, body = await create(seats=10, price=250)  # the same: answered again
        assert (status, body) == (200, {"concert_id": concert, "seats": 10, "price": 250})

        async def entered() -> bool:  # once the worker has written the catalog back to Redis
            body = {"concert_id": concert}
            status, _ = await p.call(
                "POST", "queue", "/v1/queue/tokens", json=body, headers=fan("probe")
            )
            return status == 201

        await eventually(entered, within=15)
        ((user, token),) = await buyers(p, concert, 1)
        status, answer = await p.reserve(token, concert, "11", user)
        assert (status, answer["error"]["code"]) == (404, "not_found")  # still 10 seats
        rid = await reserve_ok(p, token, concert, "10", user)
        assert (await p.settled(rid, {"held"}))["status"] == "held"

        async def one_held() -> dict[str, int] | None:
            counts: dict[str, int] = (await p.seat_map(concert))["counts"]
            return counts if counts["held"] == 1 else None

        assert sum((await eventually(one_held)).values()) == 10  # the seat map agrees


class TestLoadShedding:
    async def test_a_lagging_worker_refuses_new_reservations_at_once_then_takes_them_again(
        self, tmp_path: Path, redis_url: str, kafka_brokers: str
    ) -> None:
        # A 1 ms bound: every decision lags more than that, so the worker counts as saturated
        # for as long as it keeps deciding, and as caught up once it has not for a second.
        env = {"RESERVATION_SHED_DELAY_MS": "1", "MAX_HOLDS_PER_USER": "1"}
        env["QUEUE_ADMIT_CONTROL"] = "pipeline"  # the queue's admission hears of the refusal
        async with pipeline(tmp_path, redis_url, kafka_brokers, **env) as p:
            concert = await p.create_concert(seats=10)
            (a, token_a), (b, token_b) = await buyers(p, concert, 2)
            await p.settled(await reserve_ok(p, token_a, concert, "1", a), {"held"})

            async with p.http.post(
                p.url("reservation", "/v1/reservations"),
                json={"concert_id": concert, "seat_id": "2", "user_id": b},
                headers={"Queue-Token": token_b},
            ) as refused:
                body = await refused.json()
                assert refused.status == 503, body
                assert body["error"]["code"] == "overloaded"
                assert int(refused.headers["Retry-After"]) >= 1

            async def admission_cut_for_the_refusal() -> bool:
                async with p.http.get(p.url("queue", f"/v1/queue/{concert}")) as r:
                    return (await r.json())["admit_reason"] == "refusing"

            # The worker's health report names the refusal; the queue's controller cuts the rate.
            await eventually(admission_cut_for_the_refusal, within=5)
            await asyncio.sleep(1.2)  # nothing decided since: the lag reading has lapsed
            # The refused request took nothing: with one hold slot per user, b still gets one.
            rid = await reserve_ok(p, token_b, concert, "2", b)
            assert (await p.settled(rid, {"held", *TERMINAL}))["status"] == "held"


class TestSellOut:
    async def test_the_line_pauses_when_every_seat_is_held_reopens_for_a_lapsed_hold_and_closes_when_sold_out(  # noqa: E501
        self, tmp_path: Path, redis_url: str, kafka_brokers: str
    ) -> None:
        async with pipeline(tmp_path, redis_url, kafka_brokers, SEAT_HOLD_S="3") as p:
            concert = await p.create_concert(seats=2)
            (a, token_a), (b, token_b) = await buyers(p, concert, 2)
            held_a = await reserve_ok(p, token_a, concert, "1", a)
            held_b = await reserve_ok(p, token_b, concert, "2", b)
            await p.settled(held_a, {"held"})
            await p.settled(held_b, {"held"})
            status, body = await p.pay(token_a, held_a, a)  # a buys seat 1; b never pays
            assert status == 202, body
            assert (await p.settled(held_a, TERMINAL))["status"] == "confirmed"

            # Every seat held or sold: a fan who comes now waits, told why, and is not admitted.
            await eventually(lambda: sale_is(p, concert, "paused"), within=10)
            c_token = await p.enter(concert, "c")
            await eventually(lambda: status_is(p, c_token, "waiting", "paused"), within=10)
            await asyncio.sleep(1.0)
            assert await status_is(p, c_token, "waiting", "paused")

            # b's hold lapses: the seat comes back, and c is let in for it.
            assert (await p.settled(held_b, TERMINAL))["status"] == "expired"
            await eventually(lambda: status_is(p, c_token, "active", "open"), within=10)
            held_c = await reserve_ok(p, c_token, concert, "2", "c")
            await p.settled(held_c, {"held"})

            # Paused again; c pays: sold out. A fan still waiting gets the final answer, and a
            # fan arriving now is told at once.
            await eventually(lambda: sale_is(p, concert, "paused"), within=10)
            e_token = await p.enter(concert, "e")
            status, body = await p.pay(c_token, held_c, "c")
            assert status == 202, body
            assert (await p.settled(held_c, TERMINAL))["status"] == "confirmed"
            await eventually(lambda: status_is(p, e_token, "sold_out", "sold_out"), within=10)
            _, e_view = await p.call("GET", "queue", f"/v1/queue/tokens/{e_token}")
            assert e_view["poll_after_ms"] is None and "Sold out" in e_view["message"]
            status, body = await p.call(
                "POST",
                "queue",
                "/v1/queue/tokens",
                json={"concert_id": concert, "user_id": "late"},
                headers=fan("late"),
            )
            assert status == 410 and body["error"]["code"] == "sold_out", body


async def status_is(p: Pipeline, token: str, status: str, sale: str) -> bool:
    _, body = await p.call("GET", "queue", f"/v1/queue/tokens/{token}")
    return bool(body.get("status") == status and body.get("sale") == sale)


async def sale_is(p: Pipeline, concert: str, sale: str) -> bool:
    _, body = await p.call("GET", "queue", f"/v1/queue/{concert}")
    return bool(body.get("sale") == sale)
