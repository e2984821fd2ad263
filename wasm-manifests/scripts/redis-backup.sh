#!/bin/sh
# redis-backup.sh: takes an RDB snapshot of a running Redis over the network
# (`redis-cli --rdb`, the replication stream: works from another pod, unlike BGSAVE whose
# file stays on the server's disk), loads it into a private scratch redis-server to prove it
# loads and to count and fingerprint its keys, then uploads the RDB, a sha256 sidecar and a
# manifest to BACKUP_DEST and prunes backups older than BACKUP_RETENTION_DAYS.
# Env: REDIS_HOST [REDIS_PORT=6379] [REDIS_PASSWORD] BACKUP_DEST [BACKUP_RETENTION_DAYS].
# Needs redis-cli and redis-server (the official redis image has both).
# See README.md beside this file for exit codes.
set -eu
SCRIPT_NAME=redis-backup
_lib="$(dirname "$0")/backup-lib.sh"
[ -r "$_lib" ] || {
  echo "redis-backup ERROR backup-lib.sh not found beside $0 (ship every file of scripts/)" >&2
  exit 2
}
. "$_lib"

require_env REDIS_HOST BACKUP_DEST
REDIS_PORT=${REDIS_PORT:-6379}
case $REDIS_PORT in '' | *[!0-9]*) die "$EX_CONFIG" "REDIS_PORT must be a port number, got '$REDIS_PORT'" ;; esac
require_tool redis-cli redis-server sha256sum awk sed sort
read_retention
store_open "$BACKUP_DEST"
redis_auth
init_work

prefix=redis
stamp=$(unique_stamp "$prefix")
name="$prefix-$stamp.rdb"
target="$REDIS_HOST:$REDIS_PORT"

pong=$(tcli PING 2>&1 || true)
[ "$pong" = PONG ] || die "$EX_FAIL" "cannot reach Redis at $target: $pong"
live=$(tcli DBSIZE 2>/dev/null || echo '?')
log "backing up Redis at $target (db0 DBSIZE $live) as $name"

if ! redis-cli --no-auth-warning -h "$REDIS_HOST" -p "$REDIS_PORT" --rdb "$WORK/$name" \
  </dev/null >"$WORK/rdb.log" 2>&1; then
  die "$EX_FAIL" "redis-cli --rdb from $target failed: $(tail -c 500 "$WORK/rdb.log")"
fi
magic=$(dd if="$WORK/$name" bs=5 count=1 2>/dev/null)
[ "$magic" = REDIS ] || die "$EX_FAIL" "the snapshot from $target is not an RDB file (starts with '$magic')"
log "received $(wc -c <"$WORK/$name" | tr -d ' ') bytes of RDB"

# The manifest describes exactly this snapshot: it is computed from the RDB itself.
scratch_redis_start "$WORK" "$name"
redis_stats "$WORK/stats.txt" scli
scratch_redis_stop

write_sidecar "$WORK/$name" "$name"
{
  printf 'format\tmeshward-backup-1\n'
  printf 'kind\tredis\n'
  printf 'source\t%s\n' "$target"
  printf 'file\t%s\n' "$name"
  printf 'sha256\t%s\n' "$(sha256_of "$WORK/$name")"
  printf 'created\t%s\n' "$(now_utc)"
  cat "$WORK/stats.txt"
} >"$WORK/$prefix-$stamp.manifest"
log "manifest: $(stats_get "$WORK/stats.txt" keys) keys ($(stats_get "$WORK/stats.txt" persistent) without TTL, $(stats_get "$WORK/stats.txt" volatile) with TTL)"
publish_backup "$WORK/$name" "$name" "$WORK/$prefix-$stamp.manifest"
prune "$prefix" "$stamp"
log "backup $prefix-$stamp complete"
