"""The queue service against a real Redis at its edges: bad input, identity, Redis's memory limit,
metrics and a Redis outage, and heartbeats while the queue sheds load."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio.cluster import RedisCluster

from infra.embedded import Server
from shared.identity import mint
from shared.redis_client import create_redis
from tests.support.queue import (
    IDENTITY_SECRET,
    PAUSED,
    Client,
    enter,
    eventually,
    fan,
    on_sale,
    queue_instance,
    status_of,
)


class TestBadInput:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            (b"{not json", "body"),
            (b"[1, 2]", "body"),
            (b"", "body"),
            (b'{"user_id": "u"}', "concert_id"),
            (b'{"concert_id": 5, "user_id": "u"}', "concert_id"),
            (b'{"concert_id": "c", "user_id": null}', "user_id"),
            (b'{"concert_id": "c", "user_id": ["u"]}', "user_id"),
            (b'{"concert_id": "' + b"c" * 65 + b'", "user_id": "u"}', "concert_id"),
            (b'{"concert_id": "", "user_id": "u"}', "concert_id"),
            (b'{"concert_id": "c", "user_id": "a b"}', "user_id"),
            (b'{"concert_id": "c/../x", "user_id": "u"}', "concert_id"),
            (b'{"concert_id": "c{x}", "user_id": "u"}', "concert_id"),
        ],
    )
    async def test_malformed_entry_is_a_400_naming_the_field(
        self, redis_url: str, body: bytes, field: str
    ) -> None:
        async with queue_instance(redis_url, **PAUSED) as q:
            r = await q.post(
                "/v1/queue/tokens",
                data=body,
                headers={"Content-Type": "application/json", **fan("u")},
            )
            error = (await r.json())["error"]
            assert r.status == 400 and error["code"] == "invalid_request"
            assert error["field"] == field

    async def test_a_body_over_16_kib_is_a_413(self, redis_url: str) -> None:
        async with queue_instance(redis_url, **PAUSED) as q:
            big = b'{"concert_id": "c", "user_id": "u", "pad": "' + b"x" * 17_000 + b'"}'
            r = await q.post("/v1/queue/tokens", data=big, headers=fan("u"))
            assert r.status == 413
            assert (await r.json())["error"]["code"] == "payload_too_large"

    async def test_unknown_routes_and_methods_answer_json_errors(self, redis_url: str) -> None:
        async with queue_instance(redis_url, **PAUSED) as q:
            r = await q.get("/v1/nothing-here")
            assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
            r = await q.put("/v1/queue/tokens")
            assert r.status == 405
            assert (await r.json())["error"]["code"] == "method_not_allowed"
            r = await q.get("/v1/queue/bad%20id")
            assert r.status == 400 and (await r.json())["error"]["field"] == "concert_id"

    async def test_get_on_the_entry_route_is_a_405_not_the_stats_of_a_concert_named_tokens(
        self, redis_url: str
    ) -> None:
        async with queue_instance(redis_url, **PAUSED) as q:
            r = await q.get("/v1/queue/tokens")
            assert r.status == 405 and r.headers["Allow"] == "POST"
            assert (await r.json())["error"]["code"] == "method_not_allowed"

    async def test_a_concert_that_is_not_on_sale_has_no_queue_to_enter(
        self, redis_url: str
    ) -> None:
        async with queue_instance(redis_url, **PAUSED) as q:
            body = {"concert_id": "never-created", "user_id": "a"}
            r = await q.post("/v1/queue/tokens", json=body, headers=fan("a"))
            error = (await r.json())["error"]
            assert r.status == 404 and error["code"] == "not_found"
            assert error["field"] == "concert_id"
            r = await q.get("/v1/queue/never-created")
            assert r.status == 404
            concerts = await (await q.get("/metrics")).text()
            assert "queue_tokens_issued_total 0.0" in concerts

    async def test_a_url_over_8_kib_is_a_json_414_that_does_not_echo_it(
        self, redis_url: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        async with queue_instance(redis_url, **PAUSED) as q:
            secretish = "x" * 9000
            r = await q.get(f"/v1/queue/tokens/{secretish}")
            assert r.status == 414
            body = await r.text()
            assert secretish[:100] not in body
            assert (await r.json())["error"]["code"] == "request_too_long"
        assert not [rec for rec in caplog.records if rec.exc_info], "a traceback was logged"


async def _oom_count(q: Client) -> float:
    text = await (await q.get("/metrics")).text()
    line = next(x for x in text.splitlines() if x.startswith("redis_out_of_memory_total "))
    return float(line.split()[1])


class TestMemoryLimit:
    async def test_at_maxmemory_new_entries_get_store_full_while_fans_in_line_carry_on(
        self, private_redis: Server
    ) -> None:
        """noeviction, not LRU: at the limit nobody's place is evicted; new entries are refused
        with a clear 503, and fans already waiting or admitted keep polling and validating."""
        url = f"redis://{private_redis.address}/0"
        concert = await on_sale(url)
        redis = create_redis(url, socket_timeout=2, max_connections=2)
        async with queue_instance(url, QUEUE_MAX_ACTIVE="1") as q:
            admitted = (await enter(q, concert, "a"))["token"]
            waiting = (await enter(q, concert, "b"))["token"]

            async def active() -> bool:
                body = await (await q.get(f"/v1/queue/tokens/{admitted}")).json()
                return bool(body["status"] == "active")

            await eventually(active)
            before = await _oom_count(q)
            used = int((await redis.info("memory"))["used_memory"])
            await redis.config_set("maxmemory", str(used))  # full from now on
            try:
                r = await q.post(
                    "/v1/queue/tokens",
                    json={"concert_id": concert, "user_id": "c"},
                    headers=fan("c"),
                )
                assert r.status == 503 and r.headers["Retry-After"] == "5"
                assert (await r.json())["error"]["code"] == "store_full"
                for _ in range(3):
                    r = await q.get(f"/v1/queue/tokens/{admitted}")
                    assert r.status == 200 and (await r.json())["status"] == "active"
                    r = await q.post(f"/v1/queue/tokens/{admitted}/validate")
                    assert r.status == 200
                    r = await q.get(f"/v1/queue/tokens/{waiting}")
                    assert r.status == 200 and (await r.json())["status"] == "waiting"
                assert await redis.hget(f"q:{{{concert}}}:users", "b") is not None
                assert await _oom_count(q) == before + 1  # counted (and logged)
            finally:
                await redis.config_set("maxmemory", "0")
                await redis.aclose()


class TestIdentity:
    async def test_another_fans_place_cannot_be_taken_by_entering_again_with_their_user_id(
        self, redis_url: str
    ) -> None:
        concert = await on_sale(redis_url)
        async with queue_instance(redis_url, **PAUSED) as q:
            victim = await enter(q, concert, "victim")
            body = {"concert_id": concert, "user_id": "victim"}
            r = await q.post("/v1/queue/tokens", json=body, headers=fan("attacker"))
            assert r.status == 403
            assert (await r.json())["error"]["code"] == "identity_mismatch"
            r = await q.post(
                "/v1/queue/tokens", json={"concert_id": concert}, headers=fan("attacker")
            )
            own = await r.json()
            assert r.status == 201 and own["user_id"] == "attacker"
            assert own["token"] != victim["token"]

    @pytest.mark.parametrize(
        ("authorization", "code"),
        [
            (None, "identity_required"),
            ("Basic dmljdGltOg==", "identity_required"),
            (f"Bearer {mint('another-site-secret-' + 'z' * 32, 'victim')}", "invalid_identity"),
            (f"Bearer {mint(IDENTITY_SECRET, 'victim', ttl_s=-120)}", "invalid_identity"),
            (f"Bearer {mint(IDENTITY_SECRET, 'victim', audience='other')}", "invalid_identity"),
            ("Bearer not.a.jwt", "invalid_identity"),
        ],
    )
    async def test_entry_without_a_valid_identity_is_a_401_that_says_why(
        self, redis_url: str, authorization: str | None, code: str
    ) -> None:
        headers = {"Authorization": authorization} if authorization else {}
        async with queue_instance(redis_url, **PAUSED) as q:
            body = {"concert_id": await on_sale(redis_url), "user_id": "victim"}
            r = await q.post("/v1/queue/tokens", json=body, headers=headers)
            assert r.status == 401
            assert (await r.json())["error"]["code"] == code

    async def test_an_issuer_when_configured_must_match(self, redis_url: str) -> None:
        async with queue_instance(redis_url, IDENTITY_JWT_ISSUER="https://tickets", **PAUSED) as q:
            body = {"concert_id": await on_sale(redis_url)}
            r = await q.post("/v1/queue/tokens", json=body, headers=fan("a"))
            assert r.status == 401 and (await r.json())["error"]["code"] == "invalid_identity"
            good = mint(IDENTITY_SECRET, "a", issuer="https://tickets")
            r = await q.post(
                "/v1/queue/tokens", json=body, headers={"Authorization": f"Bearer {good}"}
            )
            assert r.status == 201


class TestOperations:
    async def test_metrics_count_requests_and_tokens(self, redis_url: str) -> None:
        async with queue_instance(redis_url, **PAUSED) as q:
            await enter(q, await on_sale(redis_url), "a")
            text = await (await q.get("/metrics")).text()
            assert "queue_tokens_issued_total 1.0" in text
            assert (
                'http_requests_total{method="POST",route="/v1/queue/tokens",status="201"}' in text
            )
            assert "redis_call_duration_seconds_bucket" in text

    async def test_redis_outage_is_a_503_with_retry_after_then_recovers(
        self, private_redis: Server
    ) -> None:
        url = f"redis://{private_redis.address}/0"
        concert = await on_sale(url)
        async with queue_instance(url, **PAUSED) as q:
            assert (await q.get("/readyz")).status == 200
            await enter(q, concert, "a")
            private_redis.stop()
            for path in ("/readyz", "/v1/queue/" + concert):
                r = await q.get(path)
                assert r.status == 503 and r.headers["Retry-After"] == "1"
                assert (await r.json())["error"]["code"] == "unavailable"
            r = await q.post(
                "/v1/queue/tokens", json={"concert_id": concert, "user_id": "b"}, headers=fan("b")
            )
            assert r.status == 503
            assert (await q.get("/healthz")).status == 200  # alive, just not ready
            await asyncio.to_thread(private_redis.restart)

            async def recovered() -> bool:
                r = await q.post(
                    "/v1/queue/tokens",
                    json={"concert_id": concert, "user_id": "b"},
                    headers=fan("b"),
                )
                return r.status == 201

            await eventually(recovered)
            assert (await q.get("/readyz")).status == 200


class TestHeartbeatUnderShedding:
    """A waiter who stops polling is dropped after the heartbeat; one whose polls the queue
    refused (503) is not: while the queue sheds, the heartbeat is widened (core.Shedding)."""

    HEARTBEAT = {**PAUSED, "QUEUE_WAIT_HEARTBEAT_S": "8"}

    async def test_a_waiter_silent_past_the_heartbeat_is_dropped(self, redis_url: str) -> None:
        concert = await on_sale(redis_url)
        async with queue_instance(redis_url, **self.HEARTBEAT) as q:
            token = (await enter(q, concert, "quiet"))["token"]
            await asyncio.sleep(8.6)
            status, body = await status_of(q, token)
            assert status == 410 and body["error"]["reason"] == "dropped", body

    async def test_a_waiter_whose_polls_the_queue_refused_keeps_their_place(
        self, redis_url: str
    ) -> None:
        concert = await on_sale(redis_url)
        async with queue_instance(redis_url, **self.HEARTBEAT) as q:
            token = (await enter(q, concert, "patient"))["token"]
            started = time.monotonic()
            await asyncio.sleep(0.3)
            admin = create_redis(redis_url, socket_timeout=5, max_connections=1)
            try:
                # Redis stops answering for 4 s (data kept): the fan's poll meets a 503 once the
                # client's timeouts and retries (more of them on a cluster) are spent.
                everywhere = (
                    {"target_nodes": RedisCluster.ALL_NODES}
                    if isinstance(admin, RedisCluster)
                    else {}
                )  # on a cluster, every node: the concert's slot may live on any of them
                await admin.execute_command("CLIENT", "PAUSE", "4000", "ALL", **everywhere)
                status, _ = await status_of(q, token)
                assert status == 503
            finally:
                await admin.aclose()
            await asyncio.sleep(8.6 - (time.monotonic() - started))  # past the heartbeat
            status, body = await status_of(q, token)
            assert status == 200 and body["status"] == "waiting", body
