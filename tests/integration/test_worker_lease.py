"""One live worker per FAUST_WORKER_ID (shared/worker_lease.py), against the real Redis."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from shared.redis_client import create_redis
from shared.worker_lease import WorkerIdTaken, claim, lease_key, me, renew
from tests.support.queue import new_id


async def test_a_second_live_worker_with_the_same_id_is_refused_naming_the_variable(
    redis_url: str,
) -> None:
    redis = create_redis(redis_url, socket_timeout=2, max_connections=2)
    service = new_id("svc")
    try:
        await claim(redis, service, 1)
        await claim(redis, service, 1)  # this process again: fine
        await redis.set(lease_key(service, 2), "another-host:4242")  # alive elsewhere
        with pytest.raises(WorkerIdTaken, match="FAUST_WORKER_ID=2"):
            await claim(redis, service, 2)
    finally:
        await redis.aclose()


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


async def test_the_lease_of_a_killed_worker_on_this_host_is_taken_over_at_once(
    redis_url: str,
) -> None:
    redis = create_redis(redis_url, socket_timeout=2, max_connections=2)
    service = new_id("svc")
    try:
        host = me().rpartition(":")[0]
        await redis.set(
            lease_key(service, 0), f"{host}:{await asyncio.to_thread(dead_pid)}", px=10_000
        )
        await claim(redis, service, 0)
        assert await redis.get(lease_key(service, 0)) == me()
    finally:
        await redis.aclose()


async def test_a_lease_lost_with_redis_data_is_taken_again_and_a_stolen_one_is_refused(
    redis_url: str,
) -> None:
    redis = create_redis(redis_url, socket_timeout=2, max_connections=2)
    service = new_id("svc")
    try:
        await claim(redis, service, 0)
        await redis.delete(lease_key(service, 0))  # as after a failover that lost it
        await renew(redis, service, 0)
        assert await redis.get(lease_key(service, 0)) == me()
        await redis.set(lease_key(service, 0), "another-host:7")
        with pytest.raises(WorkerIdTaken):
            await renew(redis, service, 0)
    finally:
        await redis.aclose()
