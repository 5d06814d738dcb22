"""The waiting room's Lua scripts against their pure model (services/queue/model.py), on a real
Redis: random sequences of entries, touches, admission ticks, completions, seat facts (which
open, pause and sell out the line) and pauses run through both, and every answer and the final
state must be the same.

The model is given the clock the script saw (each script answers its `now`), so the comparison
is exact, expiries and heartbeats included: small time-to-live and heartbeat values make the
pauses between operations expire tokens and drop waiters."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from services.queue.model import SOLD_OUT_ENTRY, Room
from services.queue.store import Entered, Promoted, QueueStore
from shared.concerts import cache_concerts
from shared.errors import SoldOut
from shared.holds import holds_key
from shared.redis_client import AnyRedis, create_redis
from shared.tokens import TokenClaims, TokenCodec
from shared.waiting_room import WaitingRoom, queue_keys, seats_key, token_state
from tests.support.queue import new_id

TTL_MS, HEARTBEAT_MS = 40, 60
USERS = [f"u{i}" for i in range(4)]
SEATS = 3  # few: random seat facts sell the concert out, pause and reopen it

enter = st.tuples(st.just("enter"), st.sampled_from(USERS))
ops = st.lists(
    st.one_of(
        enter,
        enter,  # entries twice as often: lines long enough for the admission limits to bite
        st.tuples(st.just("touch"), st.sampled_from(USERS), st.booleans(), st.booleans()),
        st.tuples(
            st.just("promote"),
            st.integers(0, 5),  # burst
            st.integers(0, 5),  # max active
            st.integers(1, 3),  # limit
            st.sampled_from([0.0, 50.0, 1000.0]),  # admit per s
            st.sampled_from([0, 30]),  # first grace ms
        ),
        st.tuples(st.just("complete"), st.sampled_from(USERS), st.booleans()),
        st.tuples(st.just("hold"), st.sampled_from(USERS), st.booleans()),  # open or lapsed
        st.tuples(st.just("settle"), st.sampled_from(USERS), st.booleans()),
        st.tuples(st.just("pause"), st.integers(0, 70)),
        st.tuples(
            st.just("seat"),
            st.sampled_from([str(i) for i in range(1, SEATS + 1)]),
            st.sampled_from("ahs"),
            st.integers(1, 6),  # version
        ),
    ),
    min_size=10,
    max_size=40,
)


async def snapshot(redis: AnyRedis, concert: str) -> dict[str, Any]:
    """The room as Redis holds it, in the model's terms."""
    _, users, wait, hb, active, gate = queue_keys(concert)
    raw: dict[str, str] = await redis.hgetall(users)

    async def scores(key: str) -> dict[str, int]:
        pairs: list[tuple[str, float]] = await redis.zrange(key, 0, -1, withscores=True)
        return {member: int(score) for member, score in pairs}

    return {
        "users": {u: tuple(v.split(":")) for u, v in raw.items()},
        "waiting": await scores(wait),
        "heartbeat": await scores(hb),
        "active": await scores(active),
        "gate": await redis.hgetall(gate),
        "seats": await redis.hgetall(seats_key(concert)),
    }


def modelled(room: Room) -> dict[str, Any]:
    return {
        "users": {u: (str(t.ticket), str(t.issued_ms), t.state) for u, t in room.users.items()},
        "waiting": dict(room.waiting),
        "heartbeat": dict(room.heartbeat),
        "active": dict(room.active),
        "gate": dict(room.gate),
        "seats": {seat: f"{st}:{v}" for seat, (st, v) in room.seats.items()},
    }


def entered(w: tuple[int, int, int, str, int, int, str, int]) -> Entered:
    return Entered(bool(w[0]), w[1], w[2], w[3], w[4], w[5], float(w[6]), w[7])


def ticket_of(model: Room, user: str, current: bool) -> int:
    """The user's current ticket, or one they no longer hold (superseded or never issued)."""
    token = model.users.get(user)
    return (token.ticket if token else 1) - (0 if current else 1)


async def run(redis_url: str, steps: list[tuple[Any, ...]]) -> None:
    redis = create_redis(redis_url, socket_timeout=2.0, max_connections=4)
    store = QueueStore(redis, CollectorRegistry())
    room = WaitingRoom(
        redis,
        TokenCodec(b"model-test-secret-0123456789abcdef"),
        active_ttl_s=TTL_MS / 1000,
        heartbeat_s=HEARTBEAT_MS / 1000,
    )
    concert = new_id("model")
    model = Room()
    times = {"ttl_ms": TTL_MS, "heartbeat_ms": HEARTBEAT_MS}
    holds: dict[str, list[int]] = {}  # user -> deadlines of their holds, as the model sees them

    async def redis_now() -> int:
        seconds, micros = await redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    try:
        await cache_concerts(redis, [(concert, SEATS, 100)])
        for step in steps:
            if step[0] == "enter":
                try:
                    got = await store.enter(
                        concert,
                        step[1],
                        active_ttl_ms=TTL_MS,
                        heartbeat_ms=HEARTBEAT_MS,
                        retention_s=600,
                    )
                except SoldOut:
                    assert model.enter(step[1], 0, **times)[0] == SOLD_OUT_ENTRY, step
                    continue
                assert got == entered(model.enter(step[1], got.now_ms, **times)), step
            elif step[0] == "touch":
                _, user, renew, current = step
                claims = TokenClaims(concert, user, ticket_of(model, user, current), 0)
                state = await room.touch(claims, renew=renew)
                want = model.touch(user, claims.ticket, state.now_ms, renew=renew, **times)
                assert state == token_state(claims, list(want)), step
            elif step[0] == "promote":
                _, burst, max_active, limit, rate, grace = step
                tick = {
                    "max_active": max_active,
                    "burst": burst,
                    "limit": limit,
                    "first_grace_ms": grace,
                }
                p = await store.promote(
                    concert,
                    admit_per_s=rate,
                    active_ttl_ms=TTL_MS,
                    heartbeat_ms=HEARTBEAT_MS,
                    **tick,
                )
                w = model.promote(p.now_ms, admit_per_s=rate, **times, **tick)
                assert p == Promoted(*w[:5], float(w[5]), p.now_ms, w[6]), step
            elif step[0] == "seat":
                _, seat, status, version = step
                (got_sale,) = await store.seats([(concert, seat, status, version)], 600)
                assert got_sale == model.seat(seat, status, version, SEATS), step
            elif step[0] == "complete":
                _, user, current = step
                ticket = ticket_of(model, user, current)
                assert await store.complete(concert, user, ticket) == model.complete(user, ticket)
            elif step[0] == "hold":
                # A minute either side of now: open or lapsed whatever the clock does meanwhile.
                _, user, still_open = step
                deadline = await redis_now() + (60_000 if still_open else -60_000)
                rid = f"r{len(holds.get(user, []))}"
                await redis.zadd(holds_key(concert, user), {rid: deadline})
                holds.setdefault(user, []).append(deadline)
            elif step[0] == "settle":
                _, user, current = step
                ticket = ticket_of(model, user, current)
                now = await redis_now()
                (got_s,) = await store.complete_settled([(concert, user, ticket)])
                want_s = model.complete_if_settled(user, ticket, holds.get(user, []), now)
                assert got_s == want_s, step
            else:
                await asyncio.sleep(step[1] / 1000)
        assert await snapshot(redis, concert) == modelled(model)
    finally:
        await redis.aclose()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=ops)
def test_the_scripts_do_what_the_model_says(redis_url: str, steps: list[tuple[Any, ...]]) -> None:
    asyncio.run(run(redis_url, steps))
