"""The reservation -> payment -> confirmation pipeline, each service its own process, on the real
Redis and broker: the system's rules under races, failures, expiry, duplicates and crashes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from infra.embedded import Server
from infra.processes import free_port, spawn, stop
from infra.stack import ROOT
from services.payment.gateway import SimulatedGateway
from shared.events import SeatHeld
from shared.redis_client import create_redis
from tests.support.kafka import (
    assert_no_seat_sold_twice,
    confirmed_seat_log,
    partitions_of,
    topic_log,
)
from tests.support.pipeline import (
    ADMIN_TOKEN,
    TERMINAL,
    Pipeline,
    buyers,
    gather_limited,
    pipeline,
)
from tests.support.queue import eventually, fan
from tests.support.sse import next_event

pytestmark = pytest.mark.slow
T = TypeVar("T")


async def reserve_ok(p: Pipeline, token: str, concert: str, seat: str, user: str) -> str:
    status, body = await p.reserve(token, concert, seat, user)
    assert status == 202, body
    return str(body["reservation_id"])


@pytest_asyncio.fixture(loop_scope="session")
async def default_pipeline(
    tmp_path: Path, redis_url: str, kafka_brokers: str
) -> AsyncIterator[Pipeline]:
    async with pipeline(tmp_path, redis_url, kafka_brokers) as p:
        yield p


class TestRace:
    async def test_a_thousand_buyers_racing_for_a_hundred_seats_sell_each_seat_once(
        self, default_pipeline: Pipeline, kafka_brokers: str
    ) -> None:
        p = default_pipeline
        concert = await p.create_concert(seats=100)
        users = await buyers(p, concert, 1000)
        rids = await gather_limited(
            [
                reserve_ok(p, token, concert, str(i % 100 + 1), user)
                for i, (user, token) in enumerate(users)
            ]
        )
        outcomes = await gather_limited([p.settled(r, {"held", "rejected"}) for r in rids])
        held = [o for o in outcomes if o["status"] == "held"]
        assert len(held) == 100
        assert Counter(o["reason"] for o in outcomes if o["status"] == "rejected") == {
            "seat_taken": 900
        }
        assert sorted(int(o["seat_id"]) for o in held) == list(range(1, 101))

        token_of = dict(users)
        paid = await gather_limited(
            [p.pay(token_of[o["user_id"]], o["reservation_id"], o["user_id"]) for o in held]
        )
        assert all(status == 202 for status, _ in paid)
        done = await gather_limited([p.settled(o["reservation_id"], TERMINAL) for o in held])
        assert all(o["status"] == "confirmed" for o in done)

        async def sold_out() -> dict[str, Any] | None:
            seats = await p.seat_map(concert, limit="1000")
            return seats if seats["counts"]["sold"] == 100 else None

        seats = await eventually(sold_out, within=20)
        assert seats["counts"] == {"available": 0, "held": 0, "sold": 100}
        assert {s["status"] for s in seats["seats"]} == {"sold"}

        async def tokens_completed() -> bool:
            answers = await gather_limited(
                [p.call("GET", "queue", f"/v1/queue/tokens/{token_of[o['user_id']]}") for o in held]
            )
            return all(s == 410 and b["error"]["reason"] == "completed" for s, b in answers)

        await eventually(tokens_completed, within=20)
        assert_no_seat_sold_twice(
            [f for f in await confirmed_seat_log(kafka_brokers) if f.concert_id == concert]
        )


class TestPaymentFailures:
    async def test_failed_payments_release_their_seats_which_can_be_bought_again(
        self, tmp_path: Path, redis_url: str, kafka_brokers: str
    ) -> None:
        async with pipeline(tmp_path, redis_url, kafka_brokers, PAYMENT_FAILURE_RATE="0.3") as p:
            concert = await p.create_concert(seats=60)
            users = await buyers(p, concert, 60)
            rids = await gather_limited(
                [reserve_ok(p, t, concert, str(i + 1), u) for i, (u, t) in enumerate(users)]
            )
            held = await gather_limited([p.settled(r, {"held"}) for r in rids])
            token_of = dict(users)
            await gather_limited(
                [p.pay(token_of[o["user_id"]], o["reservation_id"], o["user_id"]) for o in held]
            )
            done = await gather_limited([p.settled(r, TERMINAL) for r in rids])
            by_status = Counter(o["status"] for o in done)
            assert set(by_status) <= {"confirmed", "payment_failed"}
            assert by_status["payment_failed"] > 0, "a 0.3 failure rate failed nobody"
            failed = [o for o in done if o["status"] == "payment_failed"]

            # Someone else can take each released seat now.
            retry_user, retry_token = "retry-buyer", await p.active_token(concert, "retry-buyer")
            seat = failed[0]["seat_id"]
            again = await reserve_ok(p, retry_token, concert, seat, retry_user)
            assert (await p.settled(again, {"held", "rejected"}))["status"] == "held"

            async def settled_map() -> dict[str, Any] | None:
                m = await p.seat_map(concert, limit="100")
                c = m["counts"]
                expected = (60 - by_status["confirmed"] - 1, 1, by_status["confirmed"])
                return m if (c["available"], c["held"], c["sold"]) == expected else None

            seats = await eventually(settled_map, within=20)
            held_seats = [s["seat_id"] for s in seats["seats"] if s["status"] == "held"]
            assert held_seats == [seat]  # nothing else is held: no seat stuck


class TestHoldExpiry:
    async def test_an_unpaid_hold_expires_and_a_late_payment_is_refunded(
        self, tmp_path: Path, redis_url: str, kafka_brokers: str
    ) -> None:
        # Payments take longer than holds last: every payment completes after its hold expired.
        async with pipeline(
            tmp_path, redis_url, kafka_brokers, SEAT_HOLD_S="1.5", PAYMENT_LATENCY_MS="3000"
        ) as p:
            concert = await p.create_concert(seats=5)
            (idle, idle_token), (late, late_token) = await buyers(p, concert, 2)
            unpaid = await reserve_ok(p, idle_token, concert, "1", idle)
            paid_late = await reserve_ok(p, late_token, concert, "2", late)
            await p.settled(paid_late, {"held"})
            status, body = await p.pay(late_token, paid_late, late)
            assert status == 202, body

            expired = await p.settled(unpaid, TERMINAL)
            assert (expired["status"], expired["reason"]) == ("expired", "hold_expired")
            refunded = await p.settled(paid_late, TERMINAL - {"expired"})
            assert refunded["status"] == "refunded"
            assert refunded["payment_id"] == body["payment_id"]

            # The expired seat is free again, and a payment attempt on it now is a 410.
            status, error = await p.pay(idle_token, unpaid, idle)
            assert status == 410 and error["error"]["code"] == "hold_expired"

            async def all_free() -> bool:
                counts = (await p.seat_map(concert))["counts"]
                return bool(counts == {"available": 5, "held": 0, "sold": 0})

            await eventually(all_free, within=10)


class TestDuplicates:
    async def test_replaying_every_event_of_a_sale_changes_nothing(
        self, default_pipeline: Pipeline, kafka_brokers: str, redis_url: str
    ) -> None:
        p = default_pipeline
        concert = await p.create_concert(seats=10)
        users = await buyers(p, concert, 12)
        rids = await gather_limited(
            [reserve_ok(p, t, concert, str(i % 10 + 1), u) for i, (u, t) in enumerate(users)]
        )
        first = await gather_limited([p.settled(r, {"held", "rejected"}) for r in rids])
        token_of = dict(users)
        for o in first:
            if o["status"] == "held":
                await p.pay(token_of[o["user_id"]], o["reservation_id"], o["user_id"])
        before = await gather_limited([p.settled(r, TERMINAL) for r in rids])
        seats_before = await eventually(
            lambda: _counts_if_sold(p, concert, sum(o["status"] == "confirmed" for o in before))
        )
        charges_before = await _charges(redis_url)

        replayed = await _replay_concert(kafka_brokers, concert)
        assert replayed >= 3 * 10  # requests, payment requests and results, seat facts

        await asyncio.sleep(2.0)  # give the replay time to be (not) acted on
        after = await gather_limited([p.reservation(r) for r in rids])
        assert [(o["status"], o["payment_id"]) for o in after] == [
            (o["status"], o["payment_id"]) for o in before
        ]
        assert (await p.seat_map(concert))["counts"] == seats_before["counts"]
        assert await _charges(redis_url) == charges_before


class TestCrash:
    async def test_a_killed_reservation_worker_recovers_its_seats_from_the_changelog(
        self, default_pipeline: Pipeline, kafka_brokers: str
    ) -> None:
        p = default_pipeline
        concert = await p.create_concert(seats=50)
        users = await buyers(p, concert, 150)
        token_of = dict(users)

        async def retrying(call: Callable[[], Awaitable[T]]) -> T:
            """A client retries what failed while the worker was down (same idempotency key)."""
            for _ in range(300):
                try:
                    return await call()
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            raise AssertionError("the reservation worker never came back")

        async def buy(i: int, user: str) -> str:
            seat, token = str(i % 50 + 1), token_of[user]
            status, body = await retrying(lambda: p.reserve(token, concert, seat, user, user))
            assert status == 202, body
            rid = str(body["reservation_id"])
            outcome = await retrying(lambda: p.settled(rid, {"held", *TERMINAL}, within=60))
            while outcome["status"] == "held":
                status, body = await retrying(lambda: p.pay(token, rid, user))
                if status in (202, 410) or body["error"].get("status") != "pending":
                    break  # paid, or a retried payment found the sale already done (409, 410)
                assert status == 409, body
                # The killed worker showed a hold that had not reached its changelog yet: the
                # restarted worker decides the request again. Wait for that, then pay.
                outcome = await retrying(lambda: p.settled(rid, {"held", *TERMINAL}, within=60))
            return rid

        flows = [asyncio.ensure_future(buy(i, u)) for i, (u, _) in enumerate(users[:75])]
        await asyncio.sleep(0.3)
        await asyncio.to_thread(p.crash, "reservation")  # SIGKILL mid-run
        await asyncio.to_thread(p.start, "reservation")
        rids = await asyncio.gather(*flows)
        rids += await gather_limited([buy(i, u) for i, (u, _) in enumerate(users[75:], 75)])
        done = await gather_limited([p.settled(r, TERMINAL, within=60) for r in rids])
        confirmed = [o for o in done if o["status"] == "confirmed"]
        assert len({o["seat_id"] for o in confirmed}) == len(confirmed) == 50
        assert_no_seat_sold_twice(
            [f for f in await confirmed_seat_log(kafka_brokers) if f.concert_id == concert]
        )
        seats = await eventually(lambda: _counts_if_sold(p, concert, 50))
        assert seats["counts"] == {"available": 0, "held": 0, "sold": 50}


async def _map_has(p: Pipeline, concert: str) -> bool:
    status, _ = await p.call("GET", "seat_projection", f"/v1/concerts/{concert}/seats?limit=1")
    return status == 200


async def _counts_if_sold(p: Pipeline, concert: str, sold: int) -> dict[str, Any] | None:
    seats = await p.seat_map(concert)
    return seats if seats["counts"]["sold"] == sold and seats["counts"]["held"] == 0 else None


async def _charges(redis_url: str) -> int:
    from shared.redis_client import create_redis

    redis = create_redis(redis_url, socket_timeout=1.0, max_connections=2)
    try:
        return int(await redis.get(SimulatedGateway.CHARGES) or 0)
    finally:
        await redis.aclose()


async def _replay_concert(brokers: str, concert: str) -> int:
    """Publish again, byte for byte, every message about `concert` on every catalog topic."""
    from shared.topics import CATALOG

    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=brokers)
    await consumer.start()
    await producer.start()
    try:
        tps = await partitions_of(brokers, *(spec.name for spec in CATALOG))
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        copies = []
        pending = {tp for tp in tps if end[tp] > 0}
        while pending:
            for tp, records in (await consumer.getmany(*pending, timeout_ms=500)).items():
                for record in records:
                    if f'"concert_id":"{concert}"'.encode() in (record.value or b""):
                        copies.append((tp, record.key, record.value))
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
        for tp, key, value in copies:
            await producer.send_and_wait(tp.topic, value, key=key, partition=tp.partition)
        return len(copies)
    finally:
        await producer.stop()
        await consumer.stop()


class TestBrokerOutage:
    async def test_a_reservation_while_the_broker_is_down_is_a_503_and_works_once_it_is_back(
        self, tmp_path: Path, redis_url: str, private_broker: Server
    ) -> None:
        async with pipeline(
            tmp_path, redis_url, private_broker.address, KAFKA_SEND_TIMEOUT_S="2"
        ) as p:
            concert = await p.create_concert(seats=5)
            ((user, token),) = await buyers(p, concert, 1)
            await asyncio.to_thread(private_broker.stop)
            status, body = await p.reserve(token, concert, "1", user)
            assert status == 503, body
            assert body["error"]["code"] == "unavailable"
            await asyncio.to_thread(private_broker.restart)

            async def accepted() -> str | None:
                try:
                    status, body = await p.reserve(token, concert, "2", user, key="retry")
                except aiohttp.ClientError:
                    return None
                return str(body["reservation_id"]) if status == 202 else None

            rid = await eventually(accepted, within=60, interval=0.5)
            assert (await p.settled(rid, {"held", "rejected"}, within=60))["status"] == "held"

    async def test_while_the_broker_is_frozen_every_request_that_may_still_land_is_named(
        self, tmp_path: Path, redis_url: str, private_broker: Server
    ) -> None:
        async with pipeline(
            tmp_path, redis_url, private_broker.address, KAFKA_SEND_TIMEOUT_S="2"
        ) as p:
            concert = await p.create_concert(seats=30)
            users = await buyers(p, concert, 30)
            os.kill(private_broker.proc.pid, signal.SIGSTOP)  # alive, but answering nothing
            try:
                answers = await asyncio.gather(
                    *(p.reserve(t, concert, str(i + 1), u) for i, (u, t) in enumerate(users))
                )
            finally:
                os.kill(private_broker.proc.pid, signal.SIGCONT)
            known: dict[str, str] = {}  # reservation ids the clients were told about
            for (status, body), (_, token) in zip(answers, users, strict=True):
                assert status in (202, 503), body
                rid = body.get("reservation_id") or body["error"].get("reservation_id")
                if status == 503 and rid is None:
                    continue  # "not accepted": it must never be held
                assert status == 202 or body["error"]["accepted"] == "unknown", body
                known[rid] = token
            assert any(status == 503 for status, _ in answers), "the freeze was not noticed"
            p.token_of.update(known)

            # Every request that reached the log is decided; nothing else may hold a seat.
            await gather_limited([p.settled(r, {"held", *TERMINAL}, within=60) for r in known])
            held = [
                m.reservation_id
                for m in await topic_log(private_broker.address, "seat.held")
                if isinstance(m, SeatHeld) and m.concert_id == concert
            ]
            assert held and set(held) <= set(known), set(held) - set(known)


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
