-- Store the controller's next decision, if nobody decided since `expected_at` was read: with
-- several queue instances, one decision per control period wins and the others adopt it.
-- ARGV: expected decided_at_ms, rate, decreased_at_ms, reason -> 1 stored, 0 lost the race
if redis.call('EXISTS', K_SEQ) == 0 then return 0 end
local at = tonumber(redis.call('HGET', K_GATE, 'ct')) or 0
if at ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', K_GATE, 'cr', ARGV[2], 'ct', now_ms(), 'cd', ARGV[3], 'why', ARGV[4])
return 1
