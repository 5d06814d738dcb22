-- KEYS: the waiting room's six, then the concert's catalog entry
-- -> {waiting, active, measured rate, controlled rate ('' = none), reason, sale};
-- waiting = -1: no such concert
if redis.call('EXISTS', KEYS[7]) == 0 then return {-1, 0, '0', '', '', 'open'} end
local g = redis.call('HMGET', K_GATE, 'r', 'cr', 'why', 'sale')
return {redis.call('ZCARD', K_WAIT), redis.call('ZCARD', K_ACTIVE), g[1] or '0', g[2] or '',
        g[3] or '', g[4] or 'open'}
