"""Queue-service test helpers: in-process instances against a real Redis, and polling."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiohttp.test_utils import TestClient, TestServer

from services.queue.app import create_app
from services.queue.settings import QueueSettings
from shared.concerts import cache_concerts
from shared.identity import mint
from shared.redis_client import create_redis
from shared.settings import Env

SECRET = "test-secret-" + "x" * 32
IDENTITY_SECRET = "test-identity-" + "y" * 32  # the ticket site's login, as the tests play it


def fan(user: str) -> dict[str, str]:
    """The Authorization header of a fan logged in as `user` at the ticket site."""
    return {"Authorization": f"Bearer {mint(IDENTITY_SECRET, user)}"}


T = TypeVar("T")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def on_sale(redis_url: str, seats: int = 100) -> str:
    """A new concert in Redis's catalog cache, as the reservation service writes it when a
    concert is created: the waiting room admits entries only for concerts there."""
    concert = new_id("c")
    redis = create_redis(redis_url, socket_timeout=2, max_connections=2)
    try:
        await cache_concerts(redis, [(concert, seats, 100)])
    finally:
        await redis.aclose()
    return concert


def settings(redis_url: str, **env: str) -> QueueSettings:
    base = {
        "REDIS_URL": redis_url,
        "APP_ENV": "test",
        "QUEUE_TOKEN_SECRET": SECRET,
        "IDENTITY_JWT_SECRET": IDENTITY_SECRET,
        "QUEUE_ENTRY_RATE_PER_IP": "0",
        "QUEUE_ENTRY_RATE_PER_USER": "0",
        "QUEUE_ADMISSION_INTERVAL_MS": "20",
        "REDIS_SOCKET_TIMEOUT_S": "0.5",
        # No pipeline stands behind these queues: admit at QUEUE_ADMIT_PER_S (the controller
        # has tests of its own, test_admission_control*.py).
        "QUEUE_ADMIT_CONTROL": "fixed",
    }
    return QueueSettings.from_env(Env({**base, **env}))


@asynccontextmanager
async def queue_instance(redis_url: str, **env: str) -> AsyncIterator[TestClient[Any, Any]]:
    """One queue-service instance (own pool, own admission loop) on a free loopback port."""
    client: TestClient[Any, Any] = TestClient(
        TestServer(create_app(settings(redis_url, **env)), host="127.0.0.1")
    )
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def enter(client: TestClient[Any, Any], concert: str, user: str) -> dict[str, Any]:
    response = await client.post(
        "/v1/queue/tokens", json={"concert_id": concert, "user_id": user}, headers=fan(user)
    )
    assert response.status in (200, 201), await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, within: float = 10.0, interval: float = 0.05
) -> T:
    """Poll `check` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s (last: {result!r})")
        await asyncio.sleep(interval)


Client = TestClient[Any, Any]
PAUSED = {"QUEUE_ADMIT_PER_S": "0"}  # the gate closed: everyone waits


async def status_of(client: Client, token: str) -> tuple[int, dict[str, Any]]:
    """A token's status code and answer."""
    response = await client.get(f"/v1/queue/tokens/{token}")
    return response.status, await response.json()


async def stats(client: Client, concert: str) -> dict[str, Any]:
    """A concert's queue figures (GET /v1/queue/{concert})."""
    response = await client.get(f"/v1/queue/{concert}")
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body
