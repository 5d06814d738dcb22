-- One admission tick (the rules: services/queue/model.py, Room.promote).
-- ARGV: admit_per_s, max_active, active_ttl_ms, heartbeat_ms, burst, limit, first_grace_ms (an
-- admitted fan has this much longer to check in first: they may be between two polls)
-- -> {admitted, expired, dropped, waiting, active, rate (string), now_ms, sale}; admitted = -1:
-- the queue is gone. Only an open sale admits (a paused or sold-out one only expires and drops).
local now = now_ms()
if redis.call('EXISTS', K_SEQ) == 0 then return {-1, 0, 0, 0, 0, '0', now, 'open'} end
local rate, max_active, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local hb_ms, burst, limit = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local grace = tonumber(ARGV[7]) or 0
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
local g = redis.call('HMGET', K_GATE, 'k', 'ts', 'r', 'sale')
local tokens, ts, ewma = tonumber(g[1]), tonumber(g[2]), tonumber(g[3]) or 0
local sale = g[4] or 'open'
if tokens == nil or ts == nil then tokens, ts = burst, now end
local elapsed = math.max(0, now - ts)
tokens = math.min(burst, tokens + elapsed * rate / 1000)
local free = max_active - redis.call('ZCARD', K_ACTIVE)
local n = math.min(math.floor(tokens), free, limit)
if sale ~= 'open' then n = 0 end
local admitted = 0
if n > 0 then
  local popped = redis.call('ZPOPMIN', K_WAIT, n)
  for j = 1, #popped, 2 do
    local u = popped[j]
    local t, i = get_user(u)
    redis.call('ZREM', K_HB, u)
    redis.call('ZADD', K_ACTIVE, now + ttl + grace, u)
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
        tostring(ewma), now, sale}
