-- KEYS: the waiting room's six, then the concert's catalog entry -> {waiting, active, rate};
-- waiting = -1: no such concert
if redis.call('EXISTS', KEYS[7]) == 0 then return {-1, 0, '0'} end
return {redis.call('ZCARD', K_WAIT), redis.call('ZCARD', K_ACTIVE),
        redis.call('HGET', K_GATE, 'r') or '0'}
