-- One seat fact (the rules: services/queue/model.py, Room.seat). KEYS: the waiting room's six,
-- the concert's catalog entry, the seat statuses hash. ARGV: seat, status (a/h/s), version,
-- retention_s -> the sale state after it (open / paused / sold_out)
local K_CATALOG, K_SEATS = KEYS[7], KEYS[8]
local seat, status, version = ARGV[1], ARGV[2], tonumber(ARGV[3])
local cur = redis.call('HGET', K_SEATS, seat)
local old, seen = 'a', 0
if cur then
  local s, v = string.match(cur, '^(%a):(%d+)$')
  old, seen = s, tonumber(v)
end
if version > seen then
  local g = redis.call('HMGET', K_GATE, 'nh', 'ns')
  local held, sold = tonumber(g[1]) or 0, tonumber(g[2]) or 0
  if old == 'h' then held = held - 1 elseif old == 's' then sold = sold - 1 end
  if status == 'h' then held = held + 1 elseif status == 's' then sold = sold + 1 end
  redis.call('HSET', K_SEATS, seat, status .. ':' .. version)
  redis.call('HSET', K_GATE, 'nh', held, 'ns', sold)
  local total = tonumber(redis.call('HGET', K_CATALOG, 'seats'))
  if total ~= nil then
    local sale = 'open'
    if total - held - sold <= 0 then
      if held > 0 then sale = 'paused' else sale = 'sold_out' end
    end
    redis.call('HSET', K_GATE, 'sale', sale)
  end
  for _, k in ipairs({K_SEATS, K_GATE}) do
    if redis.call('TTL', k) < 0 then redis.call('EXPIRE', k, ARGV[4]) end
  end
end
return redis.call('HGET', K_GATE, 'sale') or 'open'
