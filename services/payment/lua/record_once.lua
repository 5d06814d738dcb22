-- KEYS: the outcome record, the counter of successes; ARGV: outcome, retention s
-- -> the first outcome recorded under this key (this one, if it is the first)
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  if ARGV[1] == 'ok' then redis.call('INCR', KEYS[2]) end
  return ARGV[1]
end
return redis.call('GET', KEYS[1])
