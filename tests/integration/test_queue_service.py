"""The queue service against a real Redis: order, admission, expiry, tokens, bad input, outages."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio.cluster import RedisCluster

from infra.embedded import Server
from shared.errors import TokenInvalid, TokenMismatch, TokenNotActive
from shared.identity import mint
from shared.redis_client import create_redis
from shared.tokens import TokenClaims, TokenCodec
from shared.waiting_room import WaitingRoom
from tests.support.queue import (
    IDENTITY_SECRET,
    SECRET,
    enter,
    eventually,
    fan,
    on_sale,
    queue_instance,
)

Client = TestClient[Any, Any]
PAUSED = {"QUEUE_ADMIT_PER_S": "0"}


async def status_of(client: Client, token: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(f"/v1/queue/tokens/{token}")
    return response.status, await response.json()


async def stats(client: Client, concert: str) -> dict[str, Any]:
    response = await client.get(f"/v1/queue/{concert}")
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


class TestEntry:
    async def test_concurrent_entries_over_two_instances_get_fifo_gap_free_places(
        self, redis_url: str
    ) -> None:
        concert, n = await on_sale(redis_url), 5000
        async with (
            queue_instance(redis_url, **PAUSED) as a,
            queue_instance(redis_url, **PAUSED) as b,
        ):
            gate = asyncio.Semaphore(200)

            async def one(i: int) -> dict[str, Any]:
                async with gate:
                    return await enter((a, b)[i % 2], concert, f"u{i}")

            entries = await asyncio.gather(*(one(i) for i in range(n)))
            assert sorted(e["ticket"] for e in entries) == list(range(1, n + 1))
            assert all(e["position"] == e["ticket"] for e in entries)
            assert all(e["status"] == "waiting" for e in entries)
            assert (await stats(b, concert))["waiting"] == n

        # Open the gate for 100: exactly the 100 lowest tickets are admitted, in order.
        async with queue_instance(
            redis_url, QUEUE_ADMIT_PER_S="100000", QUEUE_MAX_ACTIVE="100"
        ) as c:
            await eventually(lambda: _active_is(c, concert, 100))
            by_ticket = sorted(entries, key=lambda e: e["ticket"])
            for e in by_ticket[:100] + by_ticket[100:110]:
                code, body = await status_of(c, e["token"])
                assert code == 200
                assert body["status"] == ("active" if e["ticket"] <= 100 else "waiting")
            _, first_waiting = await status_of(c, by_ticket[100]["token"])
            assert first_waiting["position"] == 1

    async def test_entering_again_returns_the_same_token_and_place(self, redis_url: str) -> None:
        concert = await on_sale(redis_url)
        async with queue_instance(redis_url, **PAUSED) as q:
            first = await q.post(
                "/v1/queue/tokens", json={"concert_id": concert, "user_id": "a"}, headers=fan("a")
            )
            await enter(q, concert, "b")
            again = await q.post(
                "/v1/queue/tokens", json={"concert_id": concert, "user_id": "a"}, headers=fan("a")
            )
            assert (first.status, again.status) == (201, 200)
            one, two = await first.json(), await again.json()
            assert one["token"] == two["token"] and two["position"] == one["position"] == 1
            assert (await stats(q, concert))["waiting"] == 2

    async def test_too_many_entries_from_one_user_are_refused_with_retry_after(
        self, redis_url: str
    ) -> None:
        concert = await on_sale(redis_url)
        async with queue_instance(redis_url, QUEUE_ENTRY_RATE_PER_USER="1", **PAUSED) as q:
            codes = []
            for _ in range(5):
                r = await q.post(
                    "/v1/queue/tokens",
                    json={"concert_id": concert, "user_id": "a"},
                    headers=fan("a"),
                )
                codes.append(r.status)
            assert codes[0] == 201 and codes[-1] == 429
            assert int(r.headers["Retry-After"]) >= 1
            assert (await r.json())["error"]["code"] == "rate_limited"

    async def test_too_many_entries_from_one_client_ip_are_refused(self, redis_url: str) -> None:
        concert = await on_sale(redis_url)
        async with queue_instance(redis_url, QUEUE_ENTRY_RATE_PER_IP="2", **PAUSED) as q:
            codes = []
            for i in range(10):
                r = await q.post(
                    "/v1/queue/tokens",
                    json={"concert_id": concert, "user_id": f"{i}"},
                    headers=fan(f"{i}"),
                )
                codes.append(r.status)
            assert 429 in codes and codes[0] == 201
            assert "Retry-After" in r.headers


async def _active_is(client: Client, concert: str, n: int) -> bool:
    return (await stats(client, concert))["active"] == n


class TestAdmission:
    async def test_never_admits_more_than_max_active_even_with_two_instances(
        self, redis_url: str
    ) -> None:
        concert = await on_sale(redis_url)
        env = {"QUEUE_ADMIT_PER_S": "100000", "QUEUE_MAX_ACTIVE": "7"}
        async with queue_instance(redis_url, **env) as a, queue_instance(redis_url, **env) as b:
            for i in range(30):
                await enter((a, b)[i % 2], concert, f"u{i}")
            await eventually(lambda: _active_is(a, concert, 7))
            for _ in range(10):  # several more admission ticks on both instances
                assert (await stats(b, concert))["active"] == 7
                await asyncio.sleep(0.05)
            assert (await stats(a, concert))["waiting"] == 23

    async def test_never_admits_faster_than_the_rate(self, redis_url: str) -> None:
        concert, rate = await on_sale(redis_url), 20
        env = {"QUEUE_ADMIT_PER_S": str(rate), "QUEUE_MAX_ACTIVE": "100000"}
        async with queue_instance(redis_url, **PAUSED) as paused:
            for i in range(300):
                await enter(paused, concert, f"u{i}")
        async with queue_instance(redis_url, **env) as a, queue_instance(redis_url, **env) as b:
            start = time.monotonic()
            samples = []
            while time.monotonic() - start < 2.0:
                samples.append((time.monotonic() - start, (await stats(a, concert))["active"]))
                await asyncio.sleep(0.1)
            burst = max(1, rate // 10)
            for elapsed, active in samples:
                assert active <= rate * (elapsed + 0.05) + burst
            assert samples[-1][1] >= rate  # and it does move
            measured = (await stats(b, concert))["admitted_per_s"]
            assert 0 < measured <= rate * 1.5

    async def test_an_unused_active_token_expires_and_the_next_user_is_admitted(
        self, redis_url: str
    ) -> None:
        concert = await on_sale(redis_url)
        env = {"QUEUE_ADMIT_PER_S": "1000", "QUEUE_MAX_ACTIVE": "1", "QUEUE_ACTIVE_TTL_S": "0.5"}
        # Heartbeat 1.5 s: waiters poll every 0.5 s at most, so a newly admitted token's first
        # check-in grace is 0.5 s and a's token lapses 1 s after admission.
        env["QUEUE_WAIT_HEARTBEAT_S"] = "1.5"
        async with queue_instance(redis_url, **env) as q:
            a = await enter(q, concert, "a")
            b = await enter(q, concert, "b")
            assert (await status_of(q, b["token"]))[1]["status"] in ("waiting", "active")

            async def b_active() -> bool:
                return (await status_of(q, b["token"]))[1].get("status") == "active"

            await eventually(b_active, within=5)
            code, body = await status_of(q, a["token"])
            assert code == 410
            assert body["error"]["code"] == "token_expired"
            assert body["error"]["reason"] == "expired"

    async def test_using_an_active_token_keeps_it_alive(self, redis_url: str) -> None:
        concert = await on_sale(redis_url)
        env = {"QUEUE_ADMIT_PER_S": "1000", "QUEUE_ACTIVE_TTL_S": "0.6"}
        async with queue_instance(redis_url, **env) as q:
            a = await enter(q, concert, "a")
            await eventually(lambda: _active_is(q, concert, 1))
            for _ in range(10):  # 1.5 s of use, 2.5 TTLs
                r = await q.post(f"/v1/queue/tokens/{a['token']}/validate")
                assert r.status == 200, await r.text()
                await asyncio.sleep(0.15)

    async def test_an_abandoned_waiter_is_dropped_and_the_line_moves_past_it(
        self, redis_url: str
    ) -> None:
        concert = await on_sale(redis_url)
        env = {
            "QUEUE_ADMIT_PER_S": "1000",
            "QUEUE_MAX_ACTIVE": "1",
            "QUEUE_WAIT_HEARTBEAT_S": "0.5",
        }
        async with queue_instance(redis_url, **env) as q:
            holder = await enter(q, concert, "holder")
            await eventually(lambda: _active_is(q, concert, 1))
            abandoned = await enter(q, concert, "abandoned")
            patient = await enter(q, concert, "patient")
            for _ in range(8):  # 1.2 s: the patient user polls, the abandoned one does not
                assert (await status_of(q, patient["token"]))[0] == 200
                await asyncio.sleep(0.15)
            assert (await stats(q, concert))["waiting"] == 1
            code, body = await status_of(q, abandoned["token"])
            assert code == 410 and body["error"]["reason"] == "dropped"
            assert (await q.delete(f"/v1/queue/tokens/{holder['token']}")).status == 204

            async def patient_active() -> bool:
                return (await status_of(q, patient["token"]))[1].get("status") == "active"

            await eventually(patient_active)

    async def test_completing_a_token_frees_its_slot(self, redis_url: str) -> None:
        concert = await on_sale(redis_url)
        env = {"QUEUE_ADMIT_PER_S": "1000", "QUEUE_MAX_ACTIVE": "1"}
        async with queue_instance(redis_url, **env) as q:
            a = await enter(q, concert, "a")
            await enter(q, concert, "b")
            await eventually(lambda: _active_is(q, concert, 1))
            assert (await q.delete(f"/v1/queue/tokens/{a['token']}")).status == 204
            assert (await q.delete(f"/v1/queue/tokens/{a['token']}")).status == 204  # idempotent

            async def b_admitted() -> bool:
                s = await stats(q, concert)
                return bool(s["active"] == 1 and s["waiting"] == 0)

            await eventually(b_admitted)
            code, body = await status_of(q, a["token"])
            assert code == 410 and body["error"]["reason"] == "completed"

    async def test_re_entering_after_expiry_goes_to_the_back_with_a_new_token(
        self, redis_url: str
    ) -> None:
        concert = await on_sale(redis_url)
        async with queue_instance(redis_url, QUEUE_WAIT_HEARTBEAT_S="0.2", **PAUSED) as q:
            old = await enter(q, concert, "a")
            await enter(q, concert, "b")
            await asyncio.sleep(0.4)
            await enter(q, concert, "c")
            new = await enter(q, concert, "a")
            assert new["token"] != old["token"] and new["ticket"] == 4
            code, body = await status_of(q, old["token"])
            assert code == 410 and body["error"]["reason"] in ("dropped", "superseded")


class TestTokenChecks:
    async def _active_token(self, q: Client, concert: str, user: str) -> str:
        e = await enter(q, concert, user)
        await eventually(lambda: _active_is(q, concert, 1))
        return str(e["token"])

    async def test_validate_accepts_an_active_token_of_that_user_and_concert(
        self, redis_url: str
    ) -> None:
        concert = await on_sale(redis_url)
        async with queue_instance(redis_url, QUEUE_ADMIT_PER_S="1000") as q:
            token = await self._active_token(q, concert, "a")
            r = await q.post(
                f"/v1/queue/tokens/{token}/validate",
                json={"concert_id": concert, "user_id": "a"},
                headers=fan("a"),
            )
            body = await r.json()
            assert r.status == 200 and body["valid"] is True and body["status"] == "active"

    @pytest.mark.parametrize(
        ("claim", "code"),
        [
            ({"concert_id": "other-concert"}, "token_mismatch"),
            ({"user_id": "mallory"}, "token_mismatch"),
        ],
    )
    async def test_validate_rejects_a_token_of_another_user_or_concert(
        self, redis_url: str, claim: dict[str, str], code: str
    ) -> None:
        concert = await on_sale(redis_url)
        async with queue_instance(redis_url, QUEUE_ADMIT_PER_S="1000") as q:
            token = await self._active_token(q, concert, "a")
            r = await q.post(f"/v1/queue/tokens/{token}/validate", json=claim)
            assert r.status == 403 and (await r.json())["error"]["code"] == code

    async def test_validate_says_not_active_while_waiting(self, redis_url: str) -> None:
        async with queue_instance(redis_url, **PAUSED) as q:
            e = await enter(q, await on_sale(redis_url), "a")
            r = await q.post(f"/v1/queue/tokens/{e['token']}/validate")
            body = await r.json()
            assert r.status == 403 and body["error"]["code"] == "token_not_active"
            assert body["error"]["position"] == 1

    async def test_forged_and_tampered_tokens_are_rejected(self, redis_url: str) -> None:
        concert = await on_sale(redis_url)
        async with queue_instance(redis_url, QUEUE_ADMIT_PER_S="1000") as q:
            real = await self._active_token(q, concert, "a")
            forged = TokenCodec(b"attacker-secret-" * 2).encode(TokenClaims(concert, "a", 1, 0))
            v, _, sig = real.split(".")
            other = TokenCodec(SECRET.encode()).encode(TokenClaims(concert, "b", 1, 0))
            tampered = f"{v}.{other.split('.')[1]}.{sig}"
            for bad in (forged, tampered, "garbage", real[:-2]):
                for method, path in (("GET", ""), ("POST", "/validate"), ("DELETE", "")):
                    r = await q.request(method, f"/v1/queue/tokens/{bad}{path}")
                    assert r.status == 401, (bad, method)
                    assert (await r.json())["error"]["code"] == "invalid_token"
            assert (await status_of(q, real))[0] == 200  # the real one is untouched

    async def test_the_shared_validator_checks_signature_before_touching_redis(self) -> None:
        dead = create_redis("redis://127.0.0.1:1/0", socket_timeout=0.2, max_connections=1)
        room = WaitingRoom(dead, TokenCodec(SECRET.encode()), active_ttl_s=30, heartbeat_s=60)
        forged = TokenCodec(b"z" * 32).encode(TokenClaims("c", "u", 1, 0))
        with pytest.raises(TokenInvalid):
            await room.validate(forged, concert_id="c", user_id="u")
        real = TokenCodec(SECRET.encode()).encode(TokenClaims("c", "u", 1, 0))
        with pytest.raises(TokenMismatch):
            await room.validate(real, concert_id="other", user_id="u")
        await dead.aclose()

    async def test_the_shared_validator_accepts_only_active_tokens(self, redis_url: str) -> None:
        concert = await on_sale(redis_url)
        redis = create_redis(redis_url, socket_timeout=1, max_connections=4)
        room = WaitingRoom(redis, TokenCodec(SECRET.encode()), active_ttl_s=30, heartbeat_s=60)
        async with queue_instance(redis_url, QUEUE_ADMIT_PER_S="1000", QUEUE_MAX_ACTIVE="1") as q:
            token = await self._active_token(q, concert, "a")
            waiting = (await enter(q, concert, "b"))["token"]
            state = await room.validate(token, concert_id=concert, user_id="a")
            assert state.state == "a" and state.deadline_ms > state.now_ms
            with pytest.raises(TokenNotActive):
                await room.validate(waiting, concert_id=concert, user_id="b")
        await redis.aclose()


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
