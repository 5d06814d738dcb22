"""Who serves as the Redis primary over a Sentinel case, as each data node and each sentinel
says, sampled from outside. A token lost in a failover can then be traced to the node that took
its write and the moment that node's data was thrown away."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from infra.redis_sentinel import SERVICE, SentinelGroup


@dataclass
class RoleWatch:
    group: SentinelGroup
    now: Callable[[], float]  # seconds since the load began
    changes: list[str] = field(default_factory=list)  # "12.3 s redis-1: master"

    async def sample(self, every_s: float = 0.2) -> None:
        names = {s.port: f"redis-{i}" for i, s in enumerate(self.group.redis)}
        nodes = {names[s.port]: self._client(s.port) for s in self.group.redis}
        sentinels = {
            f"sentinel-{i}": self._client(s.port) for i, s in enumerate(self.group.sentinels)
        }
        last: dict[str, str] = {}
        try:
            while True:
                for name, client in nodes.items():
                    self._note(last, name, await _role(client, names))
                for name, client in sentinels.items():
                    self._note(last, name, await _primary_named(client, names))
                await asyncio.sleep(every_s)
        finally:
            for client in [*nodes.values(), *sentinels.values()]:
                await client.aclose()

    def _client(self, port: int) -> aioredis.Redis:
        return aioredis.Redis(
            port=port,
            password=self.group.password,
            socket_timeout=0.3,
            socket_connect_timeout=0.3,
            retry=Retry(NoBackoff(), 0),  # a node that is down says so at once
            decode_responses=True,
        )

    def _note(self, last: dict[str, str], name: str, says: str) -> None:
        if last.get(name) != says:
            last[name] = says
            self.changes.append(f"{self.now():.1f} s {name}: {says}")


async def _role(client: aioredis.Redis, names: dict[int, str]) -> str:
    try:
        role = await client.execute_command("ROLE")  # type: ignore[no-untyped-call]
    except (RedisError, OSError):
        return "down"
    if role[0] == "master":
        return "primary"
    port = int(role[2])
    return f"replica of {names.get(port, port)} ({role[3]})"


async def _primary_named(client: aioredis.Redis, names: dict[int, str]) -> str:
    try:
        addr = await client.execute_command(  # type: ignore[no-untyped-call]
            "SENTINEL", "get-master-addr-by-name", SERVICE
        )
    except (RedisError, OSError):
        return "down"
    port = int(addr[1])
    return f"primary is {names.get(port, port)}"
