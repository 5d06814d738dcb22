-- The token check as a Lua function, for TOUCH and for scripts that validate then act in the
-- same round trip (the reservation service's reserve).
-- -> {state, deadline_ms, frontier, rate_per_s (string), now_ms}
local function touch(user, ticket, ttl, hb_ms, renew)
  local now = now_ms()
  local t, i, s = get_user(user)
  if not t then return {'u', 0, 0, '0', now} end
  if t ~= ticket then return {'s', 0, 0, '0', now} end
  if s == 'w' then
    local seen = tonumber(redis.call('ZSCORE', K_HB, user))
    if seen == nil or now - seen > hb_ms then
      drop_waiting(user, t, i)
      return {'d', 0, 0, '0', now}
    end
    redis.call('ZADD', K_HB, now, user)
    local g = redis.call('HMGET', K_GATE, 'f', 'r')
    return {'w', 0, tonumber(g[1]) or 0, g[2] or '0', now}
  elseif s == 'a' then
    local deadline = tonumber(redis.call('ZSCORE', K_ACTIVE, user))
    if deadline == nil or deadline <= now then
      expire_active(user, t, i)
      return {'e', 0, 0, '0', now}
    end
    if renew == '1' then
      deadline = now + ttl
      redis.call('ZADD', K_ACTIVE, deadline, user)
    end
    return {'a', deadline, 0, '0', now}
  end
  return {s, 0, 0, '0', now}
end
