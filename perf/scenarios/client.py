"""The HTTP client the flow scenarios drive: fans entering, reserving and paying."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp

from perf.samples import Sample
from perf.scenarios.base import Context
from shared.identity import mint


class Flows:
    """Reserve -> held -> pay -> confirmed, one user and one seat per flow."""

    def __init__(
        self, ctx: Context, http: aiohttp.ClientSession, concert: str, patience: int = 5
    ) -> None:
        self.ctx = ctx
        self.patience = patience  # 503s waited out per request before it counts as failed
        self.http = http
        self.concert = concert
        self.samples: list[Sample] = []
        self.confirmed: list[str] = []
        self.retried = 0  # 503s answered with Retry-After and retried
        self.refused = 0  # flows whose reservation was still refused as overloaded at the end
        # Flows measured from the reservation attempt that was accepted (not the refused tries
        # before it), and how long each 503 took to come back: what load shedding changes.
        self.accepted: list[Sample] = []
        self.refusal_ms: list[float] = []

    async def call(
        self, method: str, url: str, *, tries: list[float] | None = None, **kw: Any
    ) -> tuple[int, Any]:
        """One request; a 503 is retried after its Retry-After, as a well-behaved client does
        (up to `patience` times), so backpressure shows up as latency rather than as a lost fan.
        `tries` gets the start time of every attempt."""
        for _ in range(self.patience):
            started = time.monotonic()
            if tries is not None:
                tries.append(started)
            async with self.http.request(method, url, **kw) as r:
                if r.status != 503:
                    return r.status, await r.json()
                pause = float(r.headers.get("Retry-After", "1"))
            self.refusal_ms.append((time.monotonic() - started) * 1000)
            self.retried += 1
            await asyncio.sleep(pause)
        return 503, {}

    async def token(self, user: str) -> str:
        q = self.ctx.urls["queue"]
        status, body = await self.call(
            "POST",
            f"{q}/v1/queue/tokens",
            json={"concert_id": self.concert, "user_id": user},
            headers=self.login(user),
        )
        if status not in (200, 201):
            raise RuntimeError(f"queue entry: {status} {body}")
        while body.get("status") != "active":
            await asyncio.sleep(0.1)
            _, body = await self.call("GET", f"{q}/v1/queue/tokens/{body['token']}")
            if "token" not in body:
                raise RuntimeError(f"queue token lost: {body}")
        return str(body["token"])

    def login(self, user: str) -> dict[str, str]:
        """The Authorization header of `user` logged in at the ticket site."""
        return {"Authorization": f"Bearer {mint(self.ctx.identity_secret, user)}"}

    async def wait(self, rid: str, seen: str, token: str) -> str:
        r = self.ctx.urls["reservation"]
        url = f"{r}/v1/reservations/{rid}?wait_ms=10000&seen={seen}"
        for _ in range(6):
            _, body = await self.call("GET", url, headers={"Queue-Token": token})
            if body.get("status") != seen:
                return str(body.get("status"))
        return seen

    async def flow(self, user: str, token: str, seat: str, record: bool = True) -> str:
        """One purchase attempt: "confirmed", "rejected" (seat taken or lost) or "error"."""
        r = self.ctx.urls["reservation"]
        started = time.monotonic()
        tries: list[float] = []
        outcome = "error"
        try:
            # ?wait_ms: the answer comes once the seat agent has decided, in one request; a
            # long-poll follows only when it has not (another worker decides, or time is up).
            status, body = await self.call(
                "POST",
                f"{r}/v1/reservations?wait_ms=10000",
                json={"concert_id": self.concert, "seat_id": seat, "user_id": user},
                headers={"Queue-Token": token},
                tries=tries,
            )
            if status == 503:
                self.refused += 1
            held = body.get("status", "") if status == 202 else ""
            if held == "pending":
                held = await self.wait(body["reservation_id"], "pending", token)
            if held == "held":
                rid = body["reservation_id"]
                status, body = await self.call(
                    "POST",
                    f"{r}/v1/reservations/{rid}/payment?wait_ms=10000",
                    json={"user_id": user},
                    headers={"Queue-Token": token},
                )
                final = body.get("reservation", {}).get("status", "") if status == 202 else ""
                if final == "held":
                    final = await self.wait(rid, "held", token)
                outcome = "confirmed" if final == "confirmed" else "rejected" if final else "error"
            elif held:
                outcome = "rejected"
        except (aiohttp.ClientError, TimeoutError, KeyError, ValueError):
            outcome = "error"
        if outcome == "confirmed":
            self.confirmed.append(seat)
        if outcome != "error" and tries:
            end = time.monotonic()
            self.accepted.append(Sample(end - self.ctx.t0, (end - tries[-1]) * 1000, True))
        if record:
            self.record(started, outcome == "confirmed")
        return outcome

    def record(self, started: float, ok: bool) -> None:
        end = time.monotonic()
        sample = Sample(end - self.ctx.t0, (end - started) * 1000, ok)
        self.samples.append(sample)
        self.ctx.live.samples.append(Sample(end, sample.ms, ok))


async def create_concert(ctx: Context, http: aiohttp.ClientSession, seats: int) -> str:
    return await post_concert(http, ctx.urls["reservation"], ctx.admin_token, seats, "perf")


async def post_concert(
    http: aiohttp.ClientSession, reservation_url: str, admin_token: str, seats: int, prefix: str
) -> str:
    """A new concert of `seats` seats (admin API), with a fresh id starting with `prefix`."""
    concert = f"{prefix}-{uuid.uuid4().hex[:8]}"
    async with http.post(
        reservation_url + "/v1/concerts",
        json={"concert_id": concert, "seats": seats, "price": 100},
        headers={"Authorization": f"Bearer {admin_token}"},
    ) as r:
        if r.status != 201:
            raise RuntimeError(f"create concert: {r.status} {await r.text()}")
    return concert


async def admitted_users(flows: Flows, prefix: str, n: int) -> list[tuple[str, str]]:
    gate = asyncio.Semaphore(200)

    async def one(i: int) -> tuple[str, str]:
        async with gate:
            user = f"{prefix}{i}"
            return user, await flows.token(user)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def open_loop(
    flows: Flows, users: list[tuple[str, str]], first_seat: int, rate_at: Any, seconds: float
) -> int:
    """Start flows at rate_at(elapsed) per second, whatever the system does; returns how many."""
    tasks = []
    started = time.monotonic()
    next_due = started
    i = 0
    while i < len(users) and next_due - started < seconds:
        if (delay := next_due - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        user, token = users[i]
        tasks.append(asyncio.create_task(flows.flow(user, token, str(first_seat + i))))
        i += 1
        next_due += 1 / max(1e-3, rate_at(next_due - started))
    await asyncio.gather(*tasks)
    return i


async def seat_counts(
    ctx: Context, http: aiohttp.ClientSession, concert: str, expect_sold: int
) -> int:
    """Sold seats in the (eventually consistent) seat map, waiting up to 10 s to catch up."""
    url = ctx.urls["seat_projection"] + f"/v1/concerts/{concert}/seats?limit=1"
    deadline = time.monotonic() + 10
    while True:
        async with http.get(url) as r:
            sold = int((await r.json())["counts"]["sold"])
        if sold == expect_sold or time.monotonic() > deadline:
            return sold
        await asyncio.sleep(0.25)
