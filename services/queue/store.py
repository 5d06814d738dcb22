"""Waiting-room writes in Redis: entry, admission and expiry, completion, stats; atomic scripts.

Key layout and the shared prelude are in shared.waiting_room. Time is Redis server time (TIME inside
the scripts), so several queue instances agree on deadlines without synchronised clocks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from redis.asyncio.cluster import RedisCluster

from services.queue.model import SOLD_OUT_ENTRY
from shared.concerts import concert_key
from shared.errors import NotFound, NotReplicated, SoldOut
from shared.holds import holds_key
from shared.redis_client import UNAVAILABLE_ERRORS, AnyRedis, read_lua, run_scripts, unavailable
from shared.waiting_room import ALLOW_OOM, CONCERTS_KEY, LUA_PRELUDE, queue_keys, seats_key

# The queue's scripts (services/queue/lua/; their rules in Python: services/queue/model.py).
ENTER_LUA = LUA_PRELUDE + read_lua(__file__, "enter")
PROMOTE_LUA = ALLOW_OOM + LUA_PRELUDE + read_lua(__file__, "promote")
COMPLETE_FN = read_lua(__file__, "complete_fn")
COMPLETE_LUA = ALLOW_OOM + LUA_PRELUDE + COMPLETE_FN + read_lua(__file__, "complete")
COMPLETE_IF_SETTLED_LUA = (
    ALLOW_OOM + LUA_PRELUDE + COMPLETE_FN + read_lua(__file__, "complete_if_settled")
)
STATS_LUA = LUA_PRELUDE + read_lua(__file__, "stats")
SEAT_LUA = ALLOW_OOM + LUA_PRELUDE + read_lua(__file__, "seat")
CONTROL_READ_LUA = LUA_PRELUDE + read_lua(__file__, "control_read")
CONTROL_WRITE_LUA = ALLOW_OOM + LUA_PRELUDE + read_lua(__file__, "control_write")
WATCH_LUA = ALLOW_OOM + LUA_PRELUDE + read_lua(__file__, "watch")


@dataclass(frozen=True, slots=True)
class Entered:
    created: bool
    ticket: int
    issued_ms: int
    state: str
    deadline_ms: int
    frontier: int
    measured_rate: float
    now_ms: int


@dataclass(frozen=True, slots=True)
class Promoted:
    admitted: int
    expired: int
    dropped: int
    waiting: int
    active: int
    measured_rate: float
    now_ms: int
    sale: str = "open"

    @property
    def gone(self) -> bool:
        return self.admitted < 0


@dataclass(frozen=True, slots=True)
class Gate:
    """What every fan of a concert sees alike: the line's front, its pace, the sale."""

    frontier: int
    measured_rate: float
    sale: str
    now_ms: int


@dataclass(frozen=True, slots=True)
class ControlState:
    """The admission controller's last decision for a concert (rate None: none yet)."""

    rate: float | None
    decided_at_ms: int
    decreased_at_ms: int
    reason: str
    now_ms: int


@dataclass(frozen=True, slots=True)
class Stats:
    waiting: int
    active: int
    measured_rate: float
    target_rate: float | None  # the controller's, None when it has not decided
    reason: str
    sale: str


class QueueStore:
    """`wait_replicas` > 0 (QUEUE_WAIT_REPLICAS): an entry is answered only once that many
    replicas have it (Redis WAIT, standalone or Sentinel), so a failover cannot lose a place that
    a fan was told about; otherwise the fan gets a 503 and entering again answers the same place."""

    def __init__(
        self,
        redis: AnyRedis,
        registry: CollectorRegistry,
        *,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 200,
    ) -> None:
        if wait_replicas and isinstance(redis, RedisCluster):
            raise ValueError("QUEUE_WAIT_REPLICAS needs a standalone or Sentinel Redis")
        self.redis = redis
        self.wait_replicas, self.wait_timeout_ms = wait_replicas, wait_timeout_ms
        self._enter: Any = redis.register_script(ENTER_LUA)
        self._promote: Any = redis.register_script(PROMOTE_LUA)
        self._complete: Any = redis.register_script(COMPLETE_LUA)
        self._settled: Any = redis.register_script(COMPLETE_IF_SETTLED_LUA)
        self._stats: Any = redis.register_script(STATS_LUA)
        self._control_read: Any = redis.register_script(CONTROL_READ_LUA)
        self._control_write: Any = redis.register_script(CONTROL_WRITE_LUA)
        self._seat: Any = redis.register_script(SEAT_LUA)
        self._watch: Any = redis.register_script(WATCH_LUA)
        self.scripts = [
            self._watch,
            self._seat,
            self._enter,
            self._promote,
            self._complete,
            self._settled,
            self._stats,
            self._control_read,
            self._control_write,
        ]
        self.latency = Histogram(
            "redis_call_duration_seconds",
            "Redis call latency by operation",
            ["op"],
            registry=registry,
            buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1),
        )

    async def _call(
        self, op: str, script: Any, concert_id: str, args: list[Any], *, catalog: bool = False
    ) -> Any:
        """`script` on the concert's queue keys (and its catalog entry, for `catalog`)."""
        keys = queue_keys(concert_id) + ([concert_key(concert_id)] if catalog else [])
        start = time.perf_counter()
        try:
            return await script(keys=keys, args=args)
        except UNAVAILABLE_ERRORS as exc:
            raise unavailable(exc, "the waiting room") from None
        finally:
            self.latency.labels(op).observe(time.perf_counter() - start)

    async def enter(
        self,
        concert_id: str,
        user_id: str,
        *,
        active_ttl_ms: int,
        heartbeat_ms: int,
        retention_s: int,
    ) -> Entered:
        args = [user_id, active_ttl_ms, heartbeat_ms, retention_s]
        if self.wait_replicas:
            r = await self._replicated_enter(concert_id, args)
        else:
            r = await self._call("enter", self._enter, concert_id, args, catalog=True)
        if int(r[0]) == SOLD_OUT_ENTRY:
            raise SoldOut(f"concert {concert_id!r} is sold out: every seat has been bought")
        if int(r[0]) < 0:
            raise NotFound(f"no concert {concert_id!r} is on sale", field="concert_id")
        return Entered(
            bool(r[0]), int(r[1]), int(r[2]), r[3], int(r[4]), int(r[5]), float(r[6]), int(r[7])
        )

    async def _replicated_enter(self, concert_id: str, args: list[Any]) -> Any:
        """ENTER, then WAIT on the same connection (one pipelined round trip)."""
        start = time.perf_counter()
        pipe = self.redis.pipeline(transaction=False)
        try:
            await self._enter(
                keys=[*queue_keys(concert_id), concert_key(concert_id)], args=args, client=pipe
            )
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            r, copies = await pipe.execute()
        except UNAVAILABLE_ERRORS as exc:
            raise unavailable(exc, "the waiting room") from None
        finally:
            self.latency.labels("enter").observe(time.perf_counter() - start)
        if int(r[0]) >= 0 and int(copies) < self.wait_replicas:
            raise NotReplicated(
                f"the waiting room could not copy your place to {self.wait_replicas} replica(s) "
                "in time; enter again to get the same place"
            )
        return r

    async def promote(
        self,
        concert_id: str,
        *,
        admit_per_s: float,
        max_active: int,
        active_ttl_ms: int,
        heartbeat_ms: int,
        burst: int,
        limit: int = 1000,
        first_grace_ms: int = 0,
    ) -> Promoted:
        r = await self._call(
            "promote",
            self._promote,
            concert_id,
            [admit_per_s, max_active, active_ttl_ms, heartbeat_ms, burst, limit, first_grace_ms],
        )
        return Promoted(
            int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), float(r[5]), int(r[6]), str(r[7])
        )

    async def seats(self, facts: list[tuple[str, str, str, int]], retention_s: int) -> list[str]:
        """Apply seat facts (concert, seat, status a/h/s, version) in one round trip; the sale
        state of each fact's concert after it (services/queue/model.py, Room.seat)."""
        start = time.perf_counter()
        calls = [
            (
                [*queue_keys(c), concert_key(c), seats_key(c)],
                [seat, status, version, retention_s],
            )
            for c, seat, status, version in facts
        ]
        try:
            return [str(r) for r in await run_scripts(self.redis, self._seat, calls)]
        except UNAVAILABLE_ERRORS as exc:
            raise unavailable(exc, "the waiting room") from None
        finally:
            self.latency.labels("seat").observe(time.perf_counter() - start)

    async def complete(self, concert_id: str, user_id: str, ticket: int) -> str:
        return str(await self._call("complete", self._complete, concert_id, [user_id, ticket]))

    async def complete_settled(self, buyers: list[tuple[str, str, int]]) -> list[str]:
        """Complete the tokens of buyers (concert, user, ticket) with nothing left pending or
        held, in one round trip; each answer as COMPLETE_IF_SETTLED_LUA's."""
        start = time.perf_counter()
        calls = [
            ([*queue_keys(c), holds_key(c, user_id)], [user_id, ticket])
            for c, user_id, ticket in buyers
        ]
        try:
            return [str(r) for r in await run_scripts(self.redis, self._settled, calls)]
        except UNAVAILABLE_ERRORS as exc:
            raise unavailable(exc, "the waiting room") from None
        finally:
            self.latency.labels("complete_settled").observe(time.perf_counter() - start)

    async def stats(self, concert_id: str) -> Stats:
        r = await self._call("stats", self._stats, concert_id, [], catalog=True)
        if int(r[0]) < 0:
            raise NotFound(f"no concert {concert_id!r} is on sale", field="concert_id")
        target = float(r[3]) if r[3] else None
        return Stats(int(r[0]), int(r[1]), float(r[2]), target, str(r[4]), str(r[5]))

    async def control_state(self, concert_id: str) -> ControlState:
        r = await self._call("control_read", self._control_read, concert_id, [])
        return ControlState(
            float(r[0]) if r[0] else None, int(r[1]), int(r[2]), str(r[3]), int(r[4])
        )

    async def decide_rate(
        self, concert_id: str, expected_at_ms: int, rate: float, decreased_at_ms: int, reason: str
    ) -> bool:
        """Store a control decision unless another instance decided since `expected_at_ms`."""
        args = [expected_at_ms, repr(rate), decreased_at_ms, reason]
        return bool(await self._call("control_write", self._control_write, concert_id, args))

    async def watch(self, concert_id: str, renew: list[str]) -> Gate:
        """The concert's gate, renewing the heartbeat of `renew` (fans with an open stream)."""
        r = await self._call("watch", self._watch, concert_id, renew)
        return Gate(int(r[0]), float(r[1]), str(r[2]), int(r[3]))

    async def register_concert(self, concert_id: str) -> None:
        await self._plain("sadd", CONCERTS_KEY, concert_id)

    async def forget_concert(self, concert_id: str) -> None:
        await self._plain("srem", CONCERTS_KEY, concert_id)

    async def concerts(self) -> set[str]:
        return set(await self._plain("smembers", CONCERTS_KEY))

    async def ping(self) -> bool:
        return bool(await self._plain("ping"))

    async def _plain(self, op: str, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return await getattr(self.redis, op)(*args)
        except UNAVAILABLE_ERRORS as exc:
            raise unavailable(exc, "the waiting room") from None
        finally:
            self.latency.labels(op).observe(time.perf_counter() - start)
