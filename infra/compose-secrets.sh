#!/bin/sh
# Random secrets for infra/compose.yaml, written once into infra/secrets/ (git-ignored, mode
# 600). An existing file is kept, so running it again changes nothing.
set -eu
dir="$(dirname "$0")/secrets"
mkdir -p "$dir"
chmod 700 "$dir"
umask 077
rand() { python3 -c 'import secrets; print(secrets.token_urlsafe(48), end="")'; }
keep() { [ -s "$dir/$1" ] || { "$2" > "$dir/$1"; echo "wrote $dir/$1"; }; }
keep redis-password rand
keep queue-token-secret rand
keep admin-token rand
keep identity-jwt-secret rand
keep grafana-admin-password rand
pw=$(cat "$dir/redis-password")
url() { printf 'redis+sentinel://:%s@sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/ticketing/0' "$pw"; }
keep redis-url url
exporter() {
  printf '{"redis://redis-primary:6379": "%s", "redis://redis-replica-1:6379": "%s", "redis://redis-replica-2:6379": "%s"}' "$pw" "$pw" "$pw"
}
keep redis-exporter-passwords.json exporter
