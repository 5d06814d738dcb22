"""One live worker per FAUST_WORKER_ID: two replicas started with the same environment fail
loudly instead of fencing each other silently (a static member id, an advertised URL and a data
directory are all derived from the worker id).

At start a worker takes a lease in Redis, `worker:{<service>}:<id>` = `<host>:<pid>`, with a
time to live; it renews it while it runs and deletes it on a clean stop. Starting is refused,
naming the variable, while another live process holds the lease. A process that was killed holds
it no longer: on the same host its pid is gone, so the lease is taken over at once; on another
host the lease runs out after LEASE_S.
"""

from __future__ import annotations

import os
import socket

from shared.redis_client import AnyRedis

LEASE_S = 10
RENEW_EVERY_S = 2.0

# KEYS[1] the lease; ARGV: who, ttl ms -> 1 renewed, 0 held by someone else (or gone)
RENEW_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


class WorkerIdTaken(RuntimeError):
    pass


def lease_key(service: str, worker_id: int) -> str:
    return f"worker:{{{service}}}:{worker_id}"


def me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_is_dead(holder: str) -> bool:
    """A holder on this host whose process is gone (it was killed: its lease is stale)."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def claim(client: AnyRedis, service: str, worker_id: int) -> None:
    """Take the lease of `worker_id` for this process, or raise WorkerIdTaken."""
    key, who = lease_key(service, worker_id), me()
    for _ in range(3):
        if await client.set(key, who, nx=True, px=LEASE_S * 1000):
            return
        raw = await client.get(key)
        if raw is None:
            continue  # it just ran out: try again
        holder = raw.decode() if isinstance(raw, bytes) else str(raw)
        if holder == who:
            return
        if holder_is_dead(holder):
            await client.delete(key)
            continue
        raise WorkerIdTaken(
            f"FAUST_WORKER_ID={worker_id} of {service} is held by another live worker "
            f"({holder}); give each replica its own FAUST_WORKER_ID"
        )
    raise WorkerIdTaken(f"could not take the lease of FAUST_WORKER_ID={worker_id} of {service}")


async def renew(client: AnyRedis, service: str, worker_id: int) -> None:
    """Keep the lease; take it again if Redis lost it (a failover); raise WorkerIdTaken if
    another live worker holds it now."""
    key = lease_key(service, worker_id)
    if not await client.eval(RENEW_LUA, 1, key, me(), LEASE_S * 1000):
        await claim(client, service, worker_id)
