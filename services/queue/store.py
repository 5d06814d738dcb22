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

from shared.concerts import concert_key
from shared.errors import NotFound, Unavailable
from shared.holds import holds_key
from shared.redis_client import UNAVAILABLE_ERRORS, AnyRedis, run_scripts, unavailable
from shared.waiting_room import ALLOW_OOM, CONCERTS_KEY, LUA_PRELUDE, queue_keys

# KEYS: the waiting room's six, then the concert's catalog entry (shared.concerts)
# ARGV: user, active_ttl_ms, heartbeat_ms, retention_s
# -> {created, ticket, issued_ms, state, deadline_ms, frontier, rate (string), now_ms};
# created = -1: no such concert
ENTER_LUA = (
    LUA_PRELUDE
    + """
if redis.call('EXISTS', KEYS[7]) == 0 then return {-1, 0, 0, 'u', 0, 0, '0', 0} end
local now = now_ms()
local user, ttl, hb_ms, retention = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local t, i, s = get_user(user)
if t then
  if s == 'w' then
    local seen = tonumber(redis.call('ZSCORE', K_HB, user))
    if seen ~= nil and now - seen <= hb_ms then
      redis.call('ZADD', K_HB, now, user)
      local g = redis.call('HMGET', K_GATE, 'f', 'r')
      return {0, t, i, 'w', 0, tonumber(g[1]) or 0, g[2] or '0', now}
    end
    drop_waiting(user, t, i)
  elseif s == 'a' then
    local deadline = tonumber(redis.call('ZSCORE', K_ACTIVE, user))
    if deadline ~= nil and deadline > now then
      deadline = now + ttl
      redis.call('ZADD', K_ACTIVE, deadline, user)
      return {0, t, i, 'a', deadline, 0, '0', now}
    end
    expire_active(user, t, i)
  end
end
t = redis.call('INCR', K_SEQ)
set_state(user, t, now, 'w')
redis.call('ZADD', K_WAIT, t, user)
redis.call('ZADD', K_HB, now, user)
redis.call('HSETNX', K_GATE, 'f', 0)
for _, k in ipairs(KEYS) do redis.call('EXPIRE', k, retention) end
local g = redis.call('HMGET', K_GATE, 'f', 'r')
return {1, t, now, 'w', 0, tonumber(g[1]) or 0, g[2] or '0', now}
"""
)

# ARGV: admit_per_s, max_active, active_ttl_ms, heartbeat_ms, burst, limit
# -> {admitted, expired, dropped, waiting, active, rate (string)}; admitted = -1: queue gone
PROMOTE_LUA = (
    ALLOW_OOM
    + LUA_PRELUDE
    + """
local now = now_ms()
if redis.call('EXISTS', K_SEQ) == 0 then return {-1, 0, 0, 0, 0, '0'} end
local rate, max_active, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local hb_ms, burst, limit = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local expired = redis.call('ZRANGEBYSCORE', K_ACTIVE, '-inf', now, 'LIMIT', 0, limit)
for _, u in ipairs(expired) do
  local t, i = get_user(u)
  redis.call('ZREM', K_ACTIVE, u)
  if t then set_state(u, t, i, 'e') end
end
local stale = redis.call('ZRANGEBYSCORE', K_HB, '-inf', now - hb_ms - 1, 'LIMIT', 0, limit)
for _, u in ipairs(stale) do
  local t, i = get_user(u)
  redis.call('ZREM', K_WAIT, u)
  redis.call('ZREM', K_HB, u)
  if t then set_state(u, t, i, 'd') end
end
local g = redis.call('HMGET', K_GATE, 'k', 'ts', 'r')
local tokens, ts, ewma = tonumber(g[1]), tonumber(g[2]), tonumber(g[3]) or 0
if tokens == nil or ts == nil then tokens, ts = burst, now end
local elapsed = math.max(0, now - ts)
tokens = math.min(burst, tokens + elapsed * rate / 1000)
local free = max_active - redis.call('ZCARD', K_ACTIVE)
local n = math.min(math.floor(tokens), free, limit)
local admitted = 0
if n > 0 then
  local popped = redis.call('ZPOPMIN', K_WAIT, n)
  for j = 1, #popped, 2 do
    local u = popped[j]
    local t, i = get_user(u)
    redis.call('ZREM', K_HB, u)
    redis.call('ZADD', K_ACTIVE, now + ttl, u)
    set_state(u, t or popped[j + 1], i or now, 'a')
    admitted = admitted + 1
  end
  tokens = tokens - admitted
  if redis.call('PTTL', K_ACTIVE) == -1 then
    local keep = redis.call('PTTL', K_SEQ)
    if keep > 0 then redis.call('PEXPIRE', K_ACTIVE, keep) end
  end
end
local tau = 5000
if elapsed > 0 then
  ewma = ewma + (1 - math.exp(-elapsed / tau)) * (admitted * 1000 / elapsed - ewma)
else
  ewma = ewma + admitted * 1000 / tau
end
local head = redis.call('ZRANGE', K_WAIT, 0, 0, 'WITHSCORES')
local frontier = tonumber(redis.call('GET', K_SEQ)) or 0
if #head > 0 then frontier = tonumber(head[2]) - 1 end
redis.call('HSET', K_GATE, 'k', tostring(tokens), 'ts', now, 'r', tostring(ewma), 'f', frontier)
return {admitted, #expired, #stale, redis.call('ZCARD', K_WAIT), redis.call('ZCARD', K_ACTIVE),
        tostring(ewma)}
"""
)

# The completion of a token, as a Lua function. -> the state the token was in (w/a: it is now
# completed)
COMPLETE_FN = """
local function complete(user, ticket)
  local t, i, s = get_user(user)
  if not t then return 'u' end
  if t ~= ticket then return 's' end
  if s == 'a' then
    redis.call('ZREM', K_ACTIVE, user)
  elseif s == 'w' then
    redis.call('ZREM', K_WAIT, user)
    redis.call('ZREM', K_HB, user)
  else
    return s
  end
  set_state(user, t, i, 'c')
  return s
end
"""

# ARGV: user, ticket
COMPLETE_LUA = ALLOW_OOM + LUA_PRELUDE + COMPLETE_FN + "return complete(ARGV[1], ARGV[2])\n"

# A buyer's token once their seat is confirmed: completed only when no reservation of theirs
# is still pending or held (KEYS[7], the user's hold slots; past deadlines do not count), so a
# fan buying several seats keeps it until the last one settles. -> 'h' (kept) or COMPLETE_FN's
# ARGV: user, ticket
COMPLETE_IF_SETTLED_LUA = (
    ALLOW_OOM
    + LUA_PRELUDE
    + COMPLETE_FN
    + """
if redis.call('ZCOUNT', KEYS[7], now_ms(), '+inf') > 0 then return 'h' end
return complete(ARGV[1], ARGV[2])
"""
)

# KEYS: the waiting room's six, then the concert's catalog entry -> {waiting, active, rate};
# waiting = -1: no such concert
STATS_LUA = (
    LUA_PRELUDE
    + """
if redis.call('EXISTS', KEYS[7]) == 0 then return {-1, 0, '0'} end
return {redis.call('ZCARD', K_WAIT), redis.call('ZCARD', K_ACTIVE),
        redis.call('HGET', K_GATE, 'r') or '0'}
"""
)


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

    @property
    def gone(self) -> bool:
        return self.admitted < 0


class NotReplicated(Unavailable):
    code = "not_replicated"


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
        self.scripts = [self._enter, self._promote, self._complete, self._settled, self._stats]
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
    ) -> Promoted:
        r = await self._call(
            "promote",
            self._promote,
            concert_id,
            [admit_per_s, max_active, active_ttl_ms, heartbeat_ms, burst, limit],
        )
        return Promoted(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), float(r[5]))

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

    async def stats(self, concert_id: str) -> tuple[int, int, float]:
        r = await self._call("stats", self._stats, concert_id, [], catalog=True)
        if int(r[0]) < 0:
            raise NotFound(f"no concert {concert_id!r} is on sale", field="concert_id")
        return int(r[0]), int(r[1]), float(r[2])

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
