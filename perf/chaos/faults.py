"""The faults of the failure matrix: each an async function of the running topology that
injects one failure under load and returns its own figures (how long a process was away, how
long the failover took)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from infra.embedded import Server
from infra.processes import free_port, kill
from infra.redis_sentinel import SentinelGroup
from perf.chaos.topology import Running
from perf.scenarios.client import post_concert
from shared.identity import mint
from shared.topics import partitions_of

Fault = Callable[[Running], Awaitable[dict[str, Any]]]


async def create_concert(env: Running, http: aiohttp.ClientSession, seats: int) -> str:
    admin = env.stack.env["ADMIN_TOKEN"]
    return await post_concert(http, env.urls["reservation"], admin, seats, "chaos")


def kill_service(name: str) -> Fault:
    async def fault(env: Running) -> dict[str, Any]:
        killed = time.monotonic()
        for proc in env.service(name).procs:
            await asyncio.to_thread(kill, proc)
        await asyncio.sleep(1.0)  # the supervisor restarts it after its 0.5 s backoff
        await env.until_ready(name)
        return {"away_s": round(time.monotonic() - killed, 1)}

    return fault


def terminate_service(name: str) -> Fault:
    """SIGTERM: the service drains (shared/serving.py) and exits by itself; the supervisor
    starts it again. Checked: /readyz answers 503 before the listener closes, a long-poll in
    flight (reservation) is answered, and the exit is clean."""

    async def fault(env: Running) -> dict[str, Any]:
        service = env.service(name)
        (proc,) = service.procs
        long_poll = await _long_poll_in_flight(env) if name == "reservation" else None
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGTERM)
        readiness: list[int] = []  # /readyz answers until the listener closed
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while proc.poll() is None:
                readiness.append(await _status(http, service.url + "/readyz"))
                if readiness[-1] == 0:
                    break
                await asyncio.sleep(0.05)
        await asyncio.to_thread(proc.wait, 30)
        drained_in = time.monotonic() - started
        figures: dict[str, Any] = {
            "drained_in_s": round(drained_in, 1),
            "not_ready_for_s": round(0.05 * readiness.count(503), 1),
            "exit_code": proc.returncode,
        }
        violations = []
        # The signal takes a moment to be handled: 200s may come first, but once not ready it
        # must stay so, and say so before the listener closes.
        first_503 = readiness.index(503) if 503 in readiness else None
        if first_503 is None or 200 in readiness[first_503:]:
            violations.append(f"/readyz answered {readiness} after SIGTERM: not 503 until closed")
        if proc.returncode != 0:
            violations.append(f"exit code {proc.returncode} after SIGTERM")
        if long_poll is not None:
            status, after_s = await long_poll
            figures["long_poll"] = {"status": status, "answered_after_s": round(after_s, 1)}
            if status != 200 or after_s > 1.0:
                violations.append(f"long-poll answered {status} {after_s:.1f} s after SIGTERM")
        await asyncio.sleep(1.0)
        await env.until_ready(name)
        figures["away_s"] = round(time.monotonic() - started, 1)
        return figures | {"violations": violations}

    return fault


async def _status(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> int:
    try:
        async with http.get(url, headers=headers) as r:
            return r.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


async def _long_poll_in_flight(env: Running) -> asyncio.Task[tuple[int, float]]:
    """A held reservation of a concert of its own, long-polled (`seen=held`, 10 s) from now:
    the task gives the poll's status and how long after it started it was answered."""
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        concert = await create_concert(env, http, 1)
        user = "drain-probe"
        login = {"Authorization": f"Bearer {mint(env.stack.env['IDENTITY_JWT_SECRET'], user)}"}
        async with http.post(
            env.urls["queue"] + "/v1/queue/tokens", json={"concert_id": concert}, headers=login
        ) as r:
            token = (await r.json())["token"]
        for _ in range(100):  # admitted within a tick of the open gate
            async with http.get(env.urls["queue"] + f"/v1/queue/tokens/{token}") as r:
                if (await r.json()).get("status") == "active":
                    break
            await asyncio.sleep(0.05)
        auth = {"Queue-Token": token}
        body = {"concert_id": concert, "seat_id": "1", "user_id": user}
        async with http.post(
            env.urls["reservation"] + "/v1/reservations?wait_ms=5000", json=body, headers=auth
        ) as r:
            answer = await r.json()
        if answer.get("status") != "held":
            raise RuntimeError(f"drain probe: no held reservation: {answer}")
        url = f"{env.urls['reservation']}/v1/reservations/{answer['reservation_id']}"
    except BaseException:
        await http.close()
        raise

    async def poll() -> tuple[int, float]:
        sent = time.monotonic()
        try:
            status = await _status(http, f"{url}?wait_ms=10000&seen=held", auth)
        finally:
            await http.close()
        return status, time.monotonic() - sent

    task = asyncio.create_task(poll())
    await asyncio.sleep(0.3)  # in flight before the signal
    return task


async def redis_restart(env: Running) -> dict[str, Any]:
    """SIGKILL Redis, start it again on its data (append-only file, fsync every second)."""
    (redis,) = [s for s in env.stack.servers if s.name == "redis"]
    started = time.monotonic()
    await asyncio.to_thread(redis.kill)
    await asyncio.sleep(2.0)
    await asyncio.to_thread(redis.restart)
    return {"away_s": round(time.monotonic() - started, 1)}


async def sentinel_failover(env: Running) -> dict[str, Any]:
    """SIGKILL the primary; the sentinels promote a replica. The old primary comes back later
    and rejoins as a replica."""
    group = env.sentinel
    assert group is not None
    old = group.primary()

    def moved_on() -> bool:
        try:
            return group.primary_port() != old.port
        except Exception:  # sentinels busy electing: not yet
            return False

    return await fail_over(old, moved_on)


def one_failover(group: SentinelGroup) -> list[str]:
    """A killed primary is replaced once. A second failover (a new primary taken for down)
    promotes a replica that missed what the first new primary accepted, and the sentinels later
    throw that away: the cause of 438 lost tokens in one run with `down-after-milliseconds`
    1000 (infra/redis_sentinel.py)."""
    out = []
    for i, sentinel in enumerate(group.sentinels):
        switches = sentinel.log.read_text().count("+switch-master")
        if switches > 1:
            out.append(f"sentinel {i} saw {switches} failovers for one killed primary")
    return out


async def cluster_primary_down(env: Running) -> dict[str, Any]:
    """SIGKILL the Redis Cluster primary serving the case's concert (all its keys share one
    slot); its replica takes over after the node timeout."""
    cluster = env.cluster
    assert cluster is not None
    key = f"q:{{{env.concert}}}:seq"
    old = await asyncio.to_thread(cluster.primary_of, key)
    return await fail_over(old, lambda: cluster.primary_of(key) is not old and cluster.healthy())


async def fail_over(old: Server, moved_on: Callable[[], bool]) -> dict[str, Any]:
    """SIGKILL `old`, wait until `moved_on()` says another node serves, then start `old` again
    5 s later (it rejoins as a replica)."""
    started = time.monotonic()
    await asyncio.to_thread(old.kill)
    while not await asyncio.to_thread(moved_on):
        if time.monotonic() - started > 60:
            raise RuntimeError(f"no failover from {old.name} within 60 s")
        await asyncio.sleep(0.1)
    failover_s = time.monotonic() - started
    await asyncio.sleep(5.0)
    await asyncio.to_thread(old.restart)
    return {"failover_s": round(failover_s, 1), "old_primary_back_after_s": 5.0}


async def scale_reservation(env: Running) -> dict[str, Any]:
    """A second reservation worker joins (FAUST_WORKER_ID=1), serves for 10 s, then is stopped
    with SIGTERM: two rebalances under load, the seats' partitions moving there and back."""
    started = time.monotonic()
    second = await asyncio.to_thread(
        env.stack.start_service,
        "reservation",
        port=free_port(),
        extra_env={"FAUST_WORKER_ID": "1"},
    )
    joined_s = time.monotonic() - started
    await asyncio.sleep(10.0)
    env.stack.services.remove(second)
    (proc,) = second.procs
    os.killpg(proc.pid, signal.SIGTERM)
    await asyncio.to_thread(proc.wait, 30)
    return {
        "second_ready_after_s": round(joined_s, 1),
        "second_stopped_after_s": round(time.monotonic() - started, 1),
        "second_exit_code": proc.returncode,
    }


CHANGELOG = "reservation-seat_records-changelog"  # the seat agent's table, compacted


async def compacted_rebuild(env: Running) -> dict[str, Any]:
    """Make the broker's log cleaner compact the seat agent's changelog under load (small
    segments, any dirty ratio), wait until it has removed records, then SIGKILL the reservation
    worker: its successor rebuilds every seat from the compacted changelog."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=env.brokers)
    await admin.start()
    try:  # AlterConfigs replaces the topic's settings: restate the ones it needs
        configs = {
            "cleanup.policy": "compact",
            "min.insync.replicas": "1",
            "segment.ms": "500",
            "min.cleanable.dirty.ratio": "0.01",
            "min.compaction.lag.ms": "0",
        }
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, CHANGELOG, configs)])
    finally:
        await admin.close()
    started = time.monotonic()
    while True:
        present, written = await records_and_offsets(env.brokers, CHANGELOG)
        if present < written:
            break
        if time.monotonic() - started > 120:
            raise RuntimeError(f"{CHANGELOG} not compacted within 120 s")
        await asyncio.sleep(1.0)
    compacted_s = time.monotonic() - started
    away = await kill_service("reservation")(env)
    return {
        "changelog_offsets": written,
        "records_left_after_compaction": present,
        "compacted_after_s": round(compacted_s, 1),
        **away,
    }


async def records_and_offsets(brokers: str, topic: str) -> tuple[int, int]:
    """(records still in `topic`, offsets ever written to it): fewer records than offsets
    means the log cleaner removed some."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=brokers, enable_auto_commit=False)
    try:  # started inside: a start cut short still closes it
        await consumer.start()
        partitions = await partitions_of(brokers, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        present = 0
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                present += sum(1 for r in records if r.offset < ends[tp])
        return present, sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        await consumer.stop()


async def kafka_leader_down(env: Running) -> dict[str, Any]:
    """SIGKILL the node leading the first partition of reservation.requested; back after 10 s."""
    leader = await _leader_of(env.brokers, "reservation.requested", 0)
    node = env.stack.brokers[leader - 1]
    started = time.monotonic()
    await asyncio.to_thread(node.kill)
    await asyncio.sleep(10.0)
    await asyncio.to_thread(node.restart)
    return {"node": leader, "back_after_s": round(time.monotonic() - started, 1)}


async def kafka_two_down(env: Running) -> dict[str, Any]:
    """Two of three nodes SIGKILLed (below min.insync.replicas): back after 5 s."""
    down = env.stack.brokers[1:]
    started = time.monotonic()
    await asyncio.gather(*(asyncio.to_thread(n.kill) for n in down))
    await asyncio.sleep(5.0)
    for node in down:
        await asyncio.to_thread(node.restart)
    return {"back_after_s": round(time.monotonic() - started, 1)}


async def _leader_of(brokers: str, topic: str, partition: int) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    await partitions_of(brokers, topic)
    admin = AIOKafkaAdminClient(bootstrap_servers=brokers)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    (state,) = [p for p in described["partitions"] if p["partition"] == partition]
    return int(state["leader"])
