-- A buyer's token once their seat is confirmed: completed only when no reservation of theirs
-- is still pending or held (KEYS[7], the user's hold slots; past deadlines do not count), so a
-- fan buying several seats keeps it until the last one settles.
-- ARGV: user, ticket -> 'h' (kept) or complete()'s answer
if redis.call('ZCOUNT', KEYS[7], now_ms(), '+inf') > 0 then return 'h' end
return complete(ARGV[1], ARGV[2])
