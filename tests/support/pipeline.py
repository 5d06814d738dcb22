"""The whole pipeline as separate processes (queue, reservation, payment, seat projection) on the
session's real Redis and broker, plus an HTTP client that speaks its API."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from infra.processes import free_port, kill
from infra.stack import ServiceProc, Stack
from tests.support.queue import IDENTITY_SECRET, SECRET, eventually, fan, new_id

ADMIN_TOKEN = "admin-" + secrets.token_hex(16)
TERMINAL = {"confirmed", "rejected", "expired", "payment_failed", "refunded"}
FAUST_SERVICES = ("reservation", "payment", "seat_projection")


@dataclass
class Pipeline:
    stack: Stack
    http: aiohttp.ClientSession
    urls: dict[str, str]
    ports: dict[str, int]
    # The Queue-Token each reservation was made with: its owner's proof for looking it up.
    token_of: dict[str, str] = field(default_factory=dict)

    def url(self, service: str, path: str) -> str:
        return self.urls[service] + path

    async def call(
        self, method: str, service: str, path: str, **kwargs: Any
    ) -> tuple[int, dict[str, Any]]:
        async with self.http.request(method, self.url(service, path), **kwargs) as r:
            body = await r.json() if r.content_type == "application/json" else {}
            return r.status, body

    async def create_concert(self, seats: int, price: int = 100) -> str:
        concert = new_id("c")
        status, body = await self.call(
            "POST",
            "reservation",
            "/v1/concerts",
            json={"concert_id": concert, "seats": seats, "price": price},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert status == 201, body
        return concert

    async def enter(self, concert: str, user: str) -> str:
        """Enter the queue: the fan's token."""
        status, body = await self.call(
            "POST",
            "queue",
            "/v1/queue/tokens",
            json={"concert_id": concert, "user_id": user},
            headers=fan(user),
        )
        assert status in (200, 201), body
        return str(body["token"])

    async def active_token(self, concert: str, user: str) -> str:
        """Enter the queue and poll until admitted (the test stack admits at once)."""
        token = await self.enter(concert, user)

        async def active() -> bool:
            _, b = await self.call("GET", "queue", f"/v1/queue/tokens/{token}")
            return b.get("status") == "active"

        await eventually(active, within=20)
        return token

    async def reserve(
        self, token: str, concert: str, seat: str, user: str, key: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Queue-Token": token, **({"Idempotency-Key": key} if key else {})}
        status, body = await self.call(
            "POST",
            "reservation",
            "/v1/reservations",
            json={"concert_id": concert, "seat_id": seat, "user_id": user},
            headers=headers,
        )
        if status == 202:
            self.token_of[str(body["reservation_id"])] = token
        return status, body

    async def pay(self, token: str, reservation_id: str, user: str) -> tuple[int, Any]:
        return await self.call(
            "POST",
            "reservation",
            f"/v1/reservations/{reservation_id}/payment",
            json={"user_id": user},
            headers={"Queue-Token": token},
        )

    async def reservation(
        self, reservation_id: str, wait_ms: int = 0, seen: str = "pending"
    ) -> dict[str, Any]:
        path = f"/v1/reservations/{reservation_id}?wait_ms={wait_ms}&seen={seen}"
        headers = {"Queue-Token": self.token_of.get(reservation_id, "")}
        status, body = await self.call("GET", "reservation", path, headers=headers)
        assert status == 200, body
        return body

    async def settled(
        self, reservation_id: str, statuses: Iterable[str], within: float = 30.0
    ) -> dict[str, Any]:
        """Wait (long-polling) until the reservation is in one of `statuses`."""
        wanted = set(statuses)
        deadline = asyncio.get_running_loop().time() + within
        seen = "pending"
        while True:
            body = await self.reservation(reservation_id, wait_ms=2000, seen=seen)
            seen = body["status"]
            if seen in wanted:
                return body
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{reservation_id} stuck in {body['status']}")

    async def seat_map(self, concert: str, **query: str) -> dict[str, Any]:
        params = "&".join(f"{k}={v}" for k, v in query.items())
        status, body = await self.call(
            "GET", "seat_projection", f"/v1/concerts/{concert}/seats?{params}"
        )
        assert status == 200, body
        return body

    def service(self, name: str) -> ServiceProc:
        return next(s for s in self.stack.services if s.name == name)

    def crash(self, name: str) -> None:
        """SIGKILL a service's processes (no drain, no flush)."""
        service = self.service(name)
        for proc in service.procs:
            kill(proc)
        self.stack.services.remove(service)

    def start(self, name: str) -> None:
        self.stack.start_service(name, port=self.ports[name])


@asynccontextmanager
async def pipeline(
    workdir: Path, redis_url: str, brokers: str, **env: str
) -> AsyncIterator[Pipeline]:
    """Start every service as its own process; stop them all at the end."""
    stack = Stack(workdir)
    stack.env.update(
        {
            "APP_ENV": "test",
            "REDIS_URL": redis_url,
            "KAFKA_BROKERS": brokers,
            "QUEUE_TOKEN_SECRET": SECRET,
            "IDENTITY_JWT_SECRET": IDENTITY_SECRET,
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "QUEUE_ENTRY_RATE_PER_IP": "0",
            "QUEUE_ENTRY_RATE_PER_USER": "0",
            "QUEUE_ADMIT_PER_S": "100000",
            "QUEUE_ADMIT_CONTROL": "fixed",  # the rule tests admit at once; control: its own tests
            "QUEUE_MAX_ACTIVE": "1000000",
            "QUEUE_ADMISSION_INTERVAL_MS": "20",
            "HOLD_SWEEP_S": "0.1",
            "PAYMENT_LATENCY_MS": "5",
            "SHUTDOWN_DRAIN_S": "0.2",  # the drain has tests of its own (chaos: terminate-*)
            # The rule tests send bursts far past what one worker decides within the shedding
            # bound; load shedding has a test of its own (TestLoadShedding).
            "RESERVATION_SHED_DELAY_MS": "0",
            **env,
        }
    )
    ports = {name: free_port() for name in (*FAUST_SERVICES, "queue")}
    connector = aiohttp.TCPConnector(limit=200)
    http = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))
    try:
        await asyncio.to_thread(stack.start_infra)
        for name, port in ports.items():
            await asyncio.to_thread(stack.start_service, name, port=port)
        yield Pipeline(stack, http, {s.name: s.url for s in stack.services}, ports)
    finally:
        await http.close()
        await asyncio.to_thread(stack.stop)


async def buyers(p: Pipeline, concert: str, n: int) -> list[tuple[str, str]]:
    """`n` users with active queue tokens: (user, token)."""
    gate = asyncio.Semaphore(100)

    async def one(i: int) -> tuple[str, str]:
        async with gate:
            user = f"u{i}"
            return user, await p.active_token(concert, user)

    return await asyncio.gather(*(one(i) for i in range(n)))


async def gather_limited(coros: list[Any], limit: int = 100) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(c: Any) -> Any:
        async with gate:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


async def reserve_ok(p: Pipeline, token: str, concert: str, seat: str, user: str) -> str:
    """A reservation the service accepted (202); its id."""
    status, body = await p.reserve(token, concert, seat, user)
    assert status == 202, body
    return str(body["reservation_id"])
