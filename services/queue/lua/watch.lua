-- WATCH: one read per concert per queue process for every fan following it over Server-Sent
-- Events (services/queue/push.py). ARGV: users whose heartbeat to renew (fans with an open stream
-- are there; only those still waiting are renewed: XX)
-- -> {frontier, measured rate (string), sale, now_ms}
local now = now_ms()
for j = 1, #ARGV do redis.call('ZADD', K_HB, 'XX', now, ARGV[j]) end
local g = redis.call('HMGET', K_GATE, 'f', 'r', 'sale')
return {tonumber(g[1]) or 0, g[2] or '0', g[3] or 'open', now}
