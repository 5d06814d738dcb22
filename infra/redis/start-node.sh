#!/bin/sh
# Start one Redis node of infra/compose.yaml (node.conf), with the password from its secret
# file, which reaches redis-server in a file and never on its command line.
#   start-node.sh [redis-server options, e.g. --replicaof redis-primary 6379]
#
# The node asks the sentinels who the primary is first. A primary that failed and comes back
# then rejoins as a replica at once, instead of serving its old data as a primary until the
# sentinels convert it (about 10 s, measured by `make chaos`), during which anything written to
# it would be thrown away. On the very first start no sentinel answers, and the options given
# apply. Tested against real sentinels by tests/integration/test_sentinel_restart.py.
set -eu
password=$(cat "${REDIS_PASSWORD_FILE:-/run/secrets/redis_password}")
auth="${AUTH_CONF:-/tmp/auth.conf}"
umask 077
printf 'requirepass %s\nmasterauth %s\n' "$password" "$password" > "$auth"
me="${NODE_HOST:-$(hostname)} ${NODE_PORT:-6379}"

primary=""
for sentinel in ${SENTINELS:-sentinel-1:26379 sentinel-2:26379 sentinel-3:26379}; do
  answer=$(REDISCLI_AUTH="$password" timeout 2 redis-cli -h "${sentinel%:*}" -p "${sentinel#*:}" \
    --raw sentinel get-master-addr-by-name "${SENTINEL_SERVICE:-ticketing}" 2>/dev/null || true)
  host=$(printf '%s\n' "$answer" | sed -n 1p)
  port=$(printf '%s\n' "$answer" | sed -n 2p)
  if [ -n "$host" ] && [ -n "$port" ]; then
    primary="$host $port"
    break
  fi
done

if [ -n "$primary" ] && [ "$primary" != "$me" ]; then
  # The last replicaof given wins over one in the options.
  # shellcheck disable=SC2086
  exec redis-server "${NODE_CONF:-/usr/local/etc/redis/node.conf}" --include "$auth" "$@" \
    --replicaof $primary
fi
exec redis-server "${NODE_CONF:-/usr/local/etc/redis/node.conf}" --include "$auth" "$@"
