#!/bin/sh
# redis-restore.sh: restores a Redis backup (RESTORE_FROM, default the latest) into the
# RUNNING Redis at REDIS_HOST:REDIS_PORT without access to its disk: the RDB (sha256-checked)
# is loaded into a private scratch redis-server, its content is checked against the manifest,
# the target is emptied (FLUSHALL: afterwards it holds exactly the snapshot), and every key
# of every database is copied with MIGRATE ... COPY REPLACE (server to server, binary-safe,
# TTLs kept) in SCAN batches. Finally the target's keys are counted and fingerprinted and
# compared with the scratch copy. Stop the service's writers first.
# Env: REDIS_HOST [REDIS_PORT=6379] [REDIS_PASSWORD] BACKUP_DEST [RESTORE_FROM].
# Needs redis-cli and redis-server. See README.md beside this file for exit codes.
set -eu
SCRIPT_NAME=redis-restore
_lib="$(dirname "$0")/backup-lib.sh"
[ -r "$_lib" ] || {
  echo "redis-restore ERROR backup-lib.sh not found beside $0 (ship every file of scripts/)" >&2
  exit 2
}
. "$_lib"

require_env REDIS_HOST BACKUP_DEST
REDIS_PORT=${REDIS_PORT:-6379}
case $REDIS_PORT in '' | *[!0-9]*) die "$EX_CONFIG" "REDIS_PORT must be a port number, got '$REDIS_PORT'" ;; esac
require_tool redis-cli redis-server sha256sum awk sed sort
store_open "$BACKUP_DEST"
redis_auth
init_work

target="$REDIS_HOST:$REDIS_PORT"

choose_backup redis rdb
log "restoring backup $BACKUP_BASE from $STORE into Redis at $target"
fetch_backup rdb
[ "$(manifest_get kind)" = redis ] || die "$EX_INTEGRITY" "$BACKUP_BASE.manifest is not a Redis manifest"

pong=$(tcli PING 2>&1 || true)
[ "$pong" = PONG ] || die "$EX_FAIL" "cannot reach Redis at $target: $pong"

# 1. Load the snapshot privately and check it against the manifest. Keys with a TTL may
#    have expired since the backup, so only keys without one must match exactly.
scratch_redis_start "$WORK" "${BACKUP_FILE##*/}"
redis_stats "$WORK/scratch.stats" scli
cp "$WORK/dbs.txt" "$WORK/scratch.dbs"
for k in persistent digest; do
  want=$(manifest_get "$k")
  got=$(stats_get "$WORK/scratch.stats" "$k")
  [ "$want" = "$got" ] ||
    die "$EX_INTEGRITY" "$BACKUP_BASE.rdb loads with $k '$got' but the manifest says '$want'"
done
want_volatile=$(manifest_get volatile)
scratch_volatile=$(stats_get "$WORK/scratch.stats" volatile)
[ "$scratch_volatile" -le "$want_volatile" ] ||
  die "$EX_INTEGRITY" "$BACKUP_BASE.rdb has $scratch_volatile keys with TTL, the manifest only $want_volatile"
log "snapshot matches its manifest: $(stats_get "$WORK/scratch.stats" persistent) keys without TTL, $scratch_volatile of $want_volatile keys with TTL still live"

# 2. Empty the target, then copy every database's keys server to server.
out=$(tcli FLUSHALL 2>&1 || true)
[ "$out" = OK ] || die "$EX_FAIL" "FLUSHALL on $target failed (renamed or not permitted?): $out"
log "flushed $target"

MIGRATE_LUA='
local res = redis.call("SCAN", ARGV[1], "COUNT", ARGV[2])
local keys = res[2]
if #keys > 0 then
  local args = {ARGV[3], ARGV[4], "", ARGV[5], ARGV[6], "COPY", "REPLACE"}
  if ARGV[7] ~= "" then
    args[#args + 1] = "AUTH"
    args[#args + 1] = ARGV[7]
  end
  args[#args + 1] = "KEYS"
  for _, k in ipairs(keys) do args[#args + 1] = k end
  redis.call("MIGRATE", unpack(args))
end
return {res[1], #keys}
'
moved=0
while read -r db _n; do
  cursor=0
  while :; do
    # The password travels as the script's last argument through stdin (-x), not argv.
    printf '%s' "${REDIS_PASSWORD:-}" | (unset REDISCLI_AUTH; exec redis-cli -s "$WORK/scratch.sock" -n "$db" -x \
      EVAL "$MIGRATE_LUA" 0 "$cursor" 200 "$REDIS_HOST" "$REDIS_PORT" "$db" 60000) >"$WORK/migrate.out" 2>&1 ||
      die "$EX_FAIL" "MIGRATE of db $db to $target failed after $moved keys (target is PARTLY restored; run again): $(head -c 500 "$WORK/migrate.out")"
    cursor=$(sed -n 1p "$WORK/migrate.out")
    count=$(sed -n 2p "$WORK/migrate.out")
    case "$cursor/$count" in
      *[!0-9/]* | /* | */) die "$EX_FAIL" "MIGRATE of db $db to $target failed: $(head -c 500 "$WORK/migrate.out")" ;;
    esac
    moved=$((moved + count))
    [ "$cursor" = 0 ] && break
  done
done <"$WORK/scratch.dbs"
log "copied $moved keys to $target"

# 3. The target must now hold what the scratch copy holds.
redis_stats "$WORK/target.stats" tcli
for k in persistent digest; do
  want=$(stats_get "$WORK/scratch.stats" "$k")
  got=$(stats_get "$WORK/target.stats" "$k")
  [ "$want" = "$got" ] ||
    die "$EX_INTEGRITY" "after the restore $target has $k '$got', the snapshot '$want' (writers running?)"
done
target_volatile=$(stats_get "$WORK/target.stats" volatile)
[ "$target_volatile" -le "$scratch_volatile" ] ||
  die "$EX_INTEGRITY" "after the restore $target has $target_volatile keys with TTL, the snapshot $scratch_volatile (writers running?)"
log "restore of $BACKUP_BASE into $target complete and verified: $(stats_get "$WORK/target.stats" keys) keys"
