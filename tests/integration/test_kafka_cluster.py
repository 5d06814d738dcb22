"""Broker failures only a cluster makes possible: the pipeline on three Kafka nodes (RF 3,
min.insync.replicas 2) loses a partition leader, then two of its three nodes.

After each fault the pipeline's rules are checked from outside: no seat sold twice, every
completed payment confirmed or refunded, every 202 terminal, the seat map equal to the decisions.
The figures (503 window, time until flows complete again) are logged; run with
`-o log_cli=true --log-cli-level=INFO` to see them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import pytest_asyncio
from aiokafka.admin import AIOKafkaAdminClient

from infra.embedded import Server, bootstrap
from shared.events import PaymentCompleted
from tests.support.kafka import assert_no_seat_sold_twice, confirmed_seat_log, topic_log
from tests.support.pipeline import TERMINAL, Pipeline, buyers, gather_limited, pipeline
from tests.support.queue import eventually

pytestmark = pytest.mark.slow
logger = logging.getLogger(__name__)
T = TypeVar("T")
CLUSTER_ENV = {
    "KAFKA_REPLICATION": "3",
    "KAFKA_MIN_INSYNC_REPLICAS": "2",
    "KAFKA_SEND_TIMEOUT_S": "2",
}


@dataclass
class Flows:
    """Buyers who each reserve a seat of their own and pay, retrying as the API tells them to:
    after a 503 (which must carry Retry-After) or a dropped connection, with the same
    Idempotency-Key."""

    p: Pipeline
    concert: str
    users: list[tuple[str, str]]
    unavailable_at: list[float] = field(default_factory=list)  # when a 503 was answered
    accepted: list[str] = field(default_factory=list)  # reservation ids answered 202
    completed_at: dict[str, float] = field(default_factory=dict)

    async def request(self, call: Callable[[], Awaitable[T]], within: float = 120.0) -> T:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                return await call()
            except aiohttp.ClientError:
                await asyncio.sleep(0.2)
        raise AssertionError("the pipeline never answered")

    async def post(self, path: str, body: dict[str, Any], token: str, key: str) -> dict[str, Any]:
        """POST until it is accepted; every 503 must say when to come back."""
        headers = {"Queue-Token": token, "Idempotency-Key": key}
        while True:

            async def once() -> tuple[int, dict[str, Any], str | None]:
                url = self.p.url("reservation", path)
                async with self.p.http.post(url, json=body, headers=headers) as r:
                    return r.status, await r.json(), r.headers.get("Retry-After")

            status, answer, retry_after = await self.request(once)
            if status != 503:
                assert status in (202, 409, 410), answer
                return answer
            assert retry_after is not None and float(retry_after) > 0, answer
            self.unavailable_at.append(time.monotonic())
            await asyncio.sleep(min(float(retry_after), 0.5))

    async def buy(self, i: int) -> str:
        user, token = self.users[i]
        body = {"concert_id": self.concert, "seat_id": str(i + 1), "user_id": user}
        rid = str((await self.post("/v1/reservations", body, token, user))["reservation_id"])
        self.accepted.append(rid)
        self.p.token_of[rid] = token
        outcome = await self.request(lambda: self.p.settled(rid, {"held", *TERMINAL}, 120))
        while outcome["status"] == "held":
            answer = await self.post(
                f"/v1/reservations/{rid}/payment", {"user_id": user}, token, f"pay-{user}"
            )
            if answer.get("error", {}).get("status") != "pending":
                break  # paid, or a retried payment found the sale already done
            outcome = await self.request(lambda: self.p.settled(rid, {"held", *TERMINAL}, 120))
        await self.request(lambda: self.p.settled(rid, TERMINAL, within=120))
        self.completed_at[rid] = time.monotonic()
        return rid

    async def steady(self, count: int, per_s: float) -> list[asyncio.Task[str]]:
        """Start `count` flows at a constant rate; return them running."""
        tasks = []
        for i in range(count):
            tasks.append(asyncio.create_task(self.buy(i)))
            await asyncio.sleep(1 / per_s)
        return tasks


async def assert_rules_hold(p: Pipeline, brokers: str, concert: str, rids: list[str]) -> None:
    """The pipeline's rules, read from outside: the API, the seat map and the topics."""
    done = await gather_limited([p.settled(r, TERMINAL, within=120) for r in rids])
    status_of = {o["reservation_id"]: o["status"] for o in done}
    confirmed = [o for o in done if o["status"] == "confirmed"]
    assert len({o["seat_id"] for o in confirmed}) == len(confirmed)
    assert_no_seat_sold_twice(
        [f for f in await confirmed_seat_log(brokers) if f.concert_id == concert]
    )
    paid = {
        m.reservation_id
        for m in await topic_log(brokers, "payment.completed")
        if isinstance(m, PaymentCompleted) and m.concert_id == concert
    }
    for rid in paid:
        status = status_of.get(rid) or (await p.reservation(rid))["status"]
        assert status in ("confirmed", "refunded"), (rid, status)

    async def seat_map_agrees() -> dict[str, Any] | None:
        counts = (await p.seat_map(concert))["counts"]
        return counts if (counts["sold"], counts["held"]) == (len(confirmed), 0) else None

    await eventually(seat_map_agrees, within=30)


async def leader_of(brokers: str, topic: str, partition: int) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    try:
        await admin.start()
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    (state,) = [p for p in described["partitions"] if p["partition"] == partition]
    return int(state["leader"])


@pytest_asyncio.fixture(loop_scope="session")
async def cluster_pipeline(
    tmp_path: Path, redis_url: str, kafka_cluster: list[Server]
) -> AsyncIterator[Pipeline]:
    async with pipeline(tmp_path, redis_url, bootstrap(kafka_cluster), **CLUSTER_ENV) as p:
        yield p


class TestLeaderDown:
    async def test_a_sigkilled_partition_leader_loses_no_accepted_request(
        self, cluster_pipeline: Pipeline, kafka_cluster: list[Server]
    ) -> None:
        p, brokers = cluster_pipeline, bootstrap(kafka_cluster)
        concert = await p.create_concert(seats=200)
        flows = Flows(p, concert, await buyers(p, concert, 200))
        leader = await leader_of(brokers, "reservation.requested", 0)
        load = asyncio.create_task(flows.steady(200, per_s=10))
        await asyncio.sleep(3)
        killed_at = time.monotonic()
        await asyncio.to_thread(kafka_cluster[leader - 1].kill)
        rids = await asyncio.gather(*await load)

        assert sorted(rids) == sorted(flows.accepted)
        await assert_rules_hold(p, brokers, concert, rids)
        after = [t - killed_at for t in flows.unavailable_at if t >= killed_at]
        resumed = min(t for t in flows.completed_at.values() if t > killed_at) - killed_at
        logger.info(
            "leader down (node %d): %d 503s over %.1f s after the kill; first flow completed "
            "%.1f s after it; %d of %d flows confirmed, none lost",
            leader,
            len(after),
            max(after, default=0.0),
            resumed,
            len(rids),
            len(rids),
        )


class TestTwoOfThreeDown:
    async def test_with_two_brokers_down_requests_get_503_and_everything_drains_once_they_return(
        self, cluster_pipeline: Pipeline, kafka_cluster: list[Server]
    ) -> None:
        p, brokers = cluster_pipeline, bootstrap(kafka_cluster)
        concert = await p.create_concert(seats=40)
        flows = Flows(p, concert, await buyers(p, concert, 40))
        before = await gather_limited([flows.buy(i) for i in range(10)])

        down = kafka_cluster[1:]
        await asyncio.gather(*(asyncio.to_thread(server.kill) for server in down))
        attempts = [
            p.reserve(token, concert, str(i + 1), user, key=user)
            for i, (user, token) in enumerate(flows.users[10:20], 10)
        ]
        during = await asyncio.gather(*attempts)
        for status, body in during:
            assert status == 503, body  # never a 202 that could be lost
            assert body["error"]["code"] == "unavailable"
        started = time.monotonic()
        retries = [asyncio.create_task(flows.buy(i)) for i in range(10, 40)]
        await asyncio.sleep(3)
        back = []
        for server in down:
            await asyncio.to_thread(server.restart)
            back.append(time.monotonic() - started)
        rids = before + list(await asyncio.gather(*retries))

        await assert_rules_hold(p, brokers, concert, rids)
        drained = max(flows.completed_at.values()) - started
        logger.info(
            "two of three down: %d of %d requests answered 503; nodes ready again %s s after "
            "the retries began, all %d flows terminal after %.1f s",
            len(during),
            len(during),
            [round(b, 1) for b in back],
            len(rids),
            drained,
        )
