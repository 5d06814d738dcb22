-- The admission controller's state of a concert (services/queue/admission.py), and Redis time.
-- -> {rate (string, '' before the first decision), decided_at_ms, decreased_at_ms, reason, now_ms}
local now = now_ms()
local g = redis.call('HMGET', K_GATE, 'cr', 'ct', 'cd', 'why')
return {g[1] or '', tonumber(g[2]) or 0, tonumber(g[3]) or 0, g[4] or '', now}
