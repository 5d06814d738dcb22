-- The waiting room's shared prelude. KEYS: 1 seq, 2 users, 3 wait, 4 hb, 5 active, 6 gate.
-- A user's record in users is 'ticket:issued_ms:state' (state: w a e d c, shared/tokens.py).
local K_SEQ, K_USERS, K_WAIT = KEYS[1], KEYS[2], KEYS[3]
local K_HB, K_ACTIVE, K_GATE = KEYS[4], KEYS[5], KEYS[6]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function get_user(user)
  local v = redis.call('HGET', K_USERS, user)
  if not v then return nil end
  return string.match(v, '^(%d+):(%d+):(%a)$')
end
local function set_state(user, t, i, s)
  redis.call('HSET', K_USERS, user, t .. ':' .. i .. ':' .. s)
end
local function expire_active(user, t, i)
  redis.call('ZREM', K_ACTIVE, user)
  set_state(user, t, i, 'e')
end
local function drop_waiting(user, t, i)
  redis.call('ZREM', K_WAIT, user)
  redis.call('ZREM', K_HB, user)
  set_state(user, t, i, 'd')
end
