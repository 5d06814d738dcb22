"""The reservation -> payment -> confirmation pipeline, each service its own process, on the real
Redis and broker: the system's rules under races, payment failures, expiry, duplicates, crashes
and a broker outage. Scale-out, shedding and sell-out: test_pipeline_scale.py; the reservation
API's answers: test_reservation_api.py."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from infra.embedded import Server
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
    TERMINAL,
    Pipeline,
    buyers,
    gather_limited,
    pipeline,
    reserve_ok,
)
from tests.support.queue import eventually

pytestmark = pytest.mark.slow
T = TypeVar("T")


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


async def _counts_if_sold(p: Pipeline, concert: str, sold: int) -> dict[str, Any] | None:
    seats = await p.seat_map(concert)
    return seats if seats["counts"]["sold"] == sold and seats["counts"]["held"] == 0 else None


async def _charges(redis_url: str) -> int:

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
