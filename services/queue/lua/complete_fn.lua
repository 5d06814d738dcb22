-- The completion of a token, as a Lua function. -> the state the token was in (w/a: it is
-- now completed)
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
