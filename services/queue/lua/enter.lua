-- KEYS: the waiting room's six, then the concert's catalog entry (shared.concerts)
-- ARGV: user, active_ttl_ms, heartbeat_ms, retention_s
-- -> {created, ticket, issued_ms, state, deadline_ms, frontier, rate (string), now_ms};
-- created = -1: no such concert; -2: it is sold out (services/queue/model.py, Room.seat)
if redis.call('EXISTS', KEYS[7]) == 0 then return {-1, 0, 0, 'u', 0, 0, '0', 0} end
local now = now_ms()
if redis.call('HGET', K_GATE, 'sale') == 'sold_out' then return {-2, 0, 0, 'u', 0, 0, '0', now} end
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
