-- One round trip per reservation request: the queue token's check (touch()), then, for an
-- active token, one of the user's hold slots.
-- KEYS: the waiting room's six, then holds; ARGV: touch()'s five, then reservation id,
-- slot lifetime ms, max slots -> touch()'s answer, plus 1 taken / 0 over the limit
local r = touch(ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5])
if r[1] ~= 'a' then r[6] = 0 return r end
local holds, rid, ttl = KEYS[7], ARGV[6], tonumber(ARGV[7])
local now = r[5]
redis.call('ZREMRANGEBYSCORE', holds, '-inf', now)
if redis.call('ZSCORE', holds, rid) then r[6] = 1 return r end
if redis.call('ZCARD', holds) >= tonumber(ARGV[8]) then r[6] = 0 return r end
redis.call('ZADD', holds, now + ttl, rid)
redis.call('PEXPIRE', holds, ttl)
r[6] = 1
return r
