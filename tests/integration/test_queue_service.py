"""The queue service against a real Redis: entry and order, admission and expiry, token checks.
Bad input, identity, Redis's memory limit and outages: test_queue_service_edges.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from shared.errors import TokenInvalid, TokenMismatch, TokenNotActive
from shared.redis_client import create_redis
from shared.tokens import TokenClaims, TokenCodec
from shared.waiting_room import WaitingRoom
from tests.support.queue import (
    PAUSED,
    SECRET,
    Client,
    enter,
    eventually,
    fan,
    on_sale,
    queue_instance,
    stats,
    status_of,
)


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
