-- A pipeline worker's health report (shared/pipeline_health.py), stamped with Redis time so
-- readers on other machines agree on its age. KEYS[1]: the health hash.
-- ARGV: worker, delay_ms, refused
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3] .. ':' .. now)
redis.call('EXPIRE', KEYS[1], 3600)
return now
