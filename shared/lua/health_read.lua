-- Every worker's last health report and Redis's time now. KEYS[1]: the health hash.
-- -> {now_ms, worker, 'delay:refused:at_ms', worker, ...}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {now}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do out[#out + 1] = v end
return out
