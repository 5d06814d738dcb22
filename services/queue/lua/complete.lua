-- ARGV: user, ticket -> complete()'s answer
return complete(ARGV[1], ARGV[2])
