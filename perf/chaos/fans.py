"""Steady fans for the failure matrix: each enters the queue, reserves one seat and pays, through
the HTTP APIs, the way a browser does: after a 503 it waits for Retry-After, after a dropped
connection half a second, and retries with the same Idempotency-Key; it gives up a step after
STEP_BUDGET_S. Every answer is recorded, and so is every promise the system made (a queue token,
a 202), in a `Ledger` that the invariant checker holds the system to afterwards.

Fans come in pairs for each seat, so the double-booking rule is exercised under the fault too.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from shared.identity import mint

STEP_BUDGET_S = 30.0
TERMINAL = frozenset({"confirmed", "rejected", "expired", "payment_failed", "refunded"})
NO_ANSWER = 0  # the status recorded when the connection was refused, reset or timed out


@dataclass(frozen=True, slots=True)
class Answer:
    t: float  # seconds since the load started
    op: str  # enter, poll, reserve, wait, pay
    status: int  # NO_ANSWER when there was none
    code: str = ""  # the error envelope's code
    ms: float = 0.0  # how long the request took

    @property
    def failed(self) -> bool:
        return self.status == NO_ANSWER or self.status >= 500


@dataclass
class Accepted:
    user: str
    seat: str
    token: str


@dataclass
class Ledger:
    """What the clients were told."""

    concert: str
    seats: int
    tokens: dict[str, str] = field(default_factory=dict)  # user -> token answered 200/201
    token_at: dict[str, float] = field(default_factory=dict)  # user -> when it was answered
    accepted: dict[str, Accepted] = field(default_factory=dict)  # reservation id -> its 202
    paid: set[str] = field(default_factory=set)  # reservation ids whose payment got a 202
    answers: list[Answer] = field(default_factory=list)
    gave_up: dict[str, int] = field(default_factory=dict)  # step -> fans who gave up there
    flows_done: list[float] = field(default_factory=list)  # when each fan's flow ended


@dataclass
class Fans:
    http: aiohttp.ClientSession
    urls: dict[str, str]
    identity_secret: str
    ledger: Ledger
    t0: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def call(
        self, op: str, method: str, url: str, **kw: Any
    ) -> tuple[int, dict[str, Any]] | None:
        """The first answer that is not a 503 or a dropped connection, within STEP_BUDGET_S;
        None if there was none."""
        deadline = time.monotonic() + STEP_BUDGET_S
        while time.monotonic() < deadline:
            pause, sent = 0.5, time.monotonic()
            try:
                async with self.http.request(method, url, **kw) as r:
                    body = await r.json() if r.content_type == "application/json" else {}
                    code = str(body.get("error", {}).get("code", "")) if r.status >= 400 else ""
                    ms = (time.monotonic() - sent) * 1000
                    self.ledger.answers.append(Answer(self.now(), op, r.status, code, ms))
                    if r.status != 503:
                        return r.status, body
                    pause = float(r.headers.get("Retry-After", "1"))
            except (aiohttp.ClientError, TimeoutError):
                self.ledger.answers.append(Answer(self.now(), op, NO_ANSWER))
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        self.ledger.gave_up[op] = self.ledger.gave_up.get(op, 0) + 1
        return None

    async def fan(self, i: int) -> None:
        try:
            await self._buy(f"fan-{i}", str(i // 2 % self.ledger.seats + 1))
        finally:
            self.ledger.flows_done.append(self.now())

    async def _buy(self, user: str, seat: str) -> None:
        q, r = self.urls["queue"], self.urls["reservation"]
        login = {"Authorization": f"Bearer {mint(self.identity_secret, user)}"}
        entered = await self.call(
            "enter",
            "POST",
            f"{q}/v1/queue/tokens",
            json={"concert_id": self.ledger.concert},
            headers=login,
        )
        if entered is None or entered[0] not in (200, 201):
            return
        body = entered[1]
        token = str(body["token"])
        self.ledger.tokens[user] = token
        self.ledger.token_at[user] = self.now()
        while body.get("status") == "waiting":
            await asyncio.sleep(body.get("poll_after_ms", 500) / 1000)
            polled = await self.call("poll", "GET", f"{q}/v1/queue/tokens/{token}")
            if polled is None or polled[0] != 200:
                return
            body = polled[1]
        auth = {"Queue-Token": token, "Idempotency-Key": f"{user}-{seat}"}
        reserved = await self.call(
            "reserve",
            "POST",
            f"{r}/v1/reservations?wait_ms=3000",
            json={"concert_id": self.ledger.concert, "seat_id": seat, "user_id": user},
            headers=auth,
        )
        if reserved is None or reserved[0] != 202:
            return
        rid = str(reserved[1]["reservation_id"])
        self.ledger.accepted[rid] = Accepted(user, seat, token)
        status = str(reserved[1]["status"])
        while status == "pending":
            seen = await self.call(
                "wait", "GET", f"{r}/v1/reservations/{rid}?wait_ms=3000", headers=auth
            )
            if seen is None or seen[0] != 200:
                return
            status = str(seen[1]["status"])
        if status != "held":
            return
        paid = await self.call(
            "pay",
            "POST",
            f"{r}/v1/reservations/{rid}/payment?wait_ms=3000",
            json={"user_id": user},
            headers=auth,
        )
        if paid is not None and paid[0] == 202:
            self.ledger.paid.add(rid)

    async def steady(self, per_s: float, seconds: float) -> None:
        """`per_s` new fans each second for `seconds` (open loop), then wait for all of them."""
        async with asyncio.TaskGroup() as fans:  # cancelled together if the case stops early
            for i in range(int(per_s * seconds)):
                delay = self.t0 + i / per_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                fans.create_task(self.fan(i))
