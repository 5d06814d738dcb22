-- TOUCH. ARGV: user, ticket, active_ttl_ms, heartbeat_ms, renew (1/0) -> touch()'s answer
return touch(ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5])
