#!/bin/sh
# pg-backup.sh: dumps one PostgreSQL database (pg_dump -Fc) to BACKUP_DEST with a sha256
# sidecar and a manifest of per-table row counts and content checksums, then prunes backups
# older than BACKUP_RETENTION_DAYS. The dump and the manifest read the SAME snapshot (the
# manifest's transaction exports it, pg_dump imports it), so they agree even under writes.
# Env: PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE BACKUP_DEST [BACKUP_RETENTION_DAYS].
# See README.md beside this file for exit codes.
set -eu
SCRIPT_NAME=pg-backup
_lib="$(dirname "$0")/backup-lib.sh"
[ -r "$_lib" ] || {
  echo "pg-backup ERROR backup-lib.sh not found beside $0 (ship every file of scripts/)" >&2
  exit 2
}
. "$_lib"

require_env PGDATABASE BACKUP_DEST
require_tool psql pg_dump sha256sum awk sed sort mkfifo
read_retention
store_open "$BACKUP_DEST"
init_work

prefix="pg-$(safe_name "$PGDATABASE")"
stamp=$(unique_stamp "$prefix")
name="$prefix-$stamp.dump"
log "backing up database '$PGDATABASE' on ${PGHOST:-local socket}:${PGPORT:-5432} as $name"

# 1. Open a REPEATABLE READ transaction that exports its snapshot and stays open (fed
#    through a FIFO held open read-write by us, so opening it never blocks).
write_pg_stats_sql "$WORK/stats.sql"
mkfifo "$WORK/psql.in"
exec 3<>"$WORK/psql.in"
# The child closes fd 3 before exec: nothing but this shell may hold the FIFO's write end,
# or psql never sees the end of its input.
(
  exec 3>&-
  exec psql -X -q -A -t -v ON_ERROR_STOP=1 -f "$WORK/psql.in" >"$WORK/psql.out" 2>"$WORK/psql.err"
) &
psql_pid=$!
at_exit "exec 3>&-; kill $psql_pid 2>/dev/null || true; wait $psql_pid 2>/dev/null || true"
# \o to a file that is then closed, so the line is flushed to disk as soon as it exists.
printf '%s\n' 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;' "\\o '$WORK/snapshot.txt'" \
  'SELECT pg_export_snapshot();' '\o' "\\! mv '$WORK/snapshot.txt' '$WORK/snapshot.done'" >&3

snapshot=""
waited=0
while [ -z "$snapshot" ]; do
  if ! pid_alive "$psql_pid"; then
    die "$EX_FAIL" "cannot open a snapshot in '$PGDATABASE': $(head -c 500 "$WORK/psql.err")"
  fi
  if [ -f "$WORK/snapshot.done" ]; then
    snapshot=$(head -n 1 "$WORK/snapshot.done")
    [ -n "$snapshot" ] || die "$EX_FAIL" "PostgreSQL returned an empty snapshot id"
    break
  fi
  waited=$((waited + 1))
  [ "$waited" -le 120 ] || die "$EX_FAIL" "no snapshot from PostgreSQL within 120 s"
  sleep 1
done
log "exported snapshot $snapshot"

# 2. Dump inside that snapshot.
if ! pg_dump -Fc --snapshot="$snapshot" -f "$WORK/$name" 2>"$WORK/pg_dump.err"; then
  die "$EX_FAIL" "pg_dump of '$PGDATABASE' failed: $(head -c 1000 "$WORK/pg_dump.err")"
fi
log "pg_dump wrote $(wc -c <"$WORK/$name" | tr -d ' ') bytes"

# 3. Row counts and checksums in the same snapshot, then end the transaction.
printf '%s\n' "\\o '$WORK/stats.raw'" "\\i '$WORK/stats.sql'" '\o' 'COMMIT;' >&3
exec 3>&-
rc=0
wait "$psql_pid" || rc=$?
[ "$rc" -eq 0 ] || die "$EX_FAIL" "computing the manifest failed (psql exit $rc): $(head -c 1000 "$WORK/psql.err")"
LC_ALL=C sort "$WORK/stats.raw" >"$WORK/stats.txt"
tables=$(wc -l <"$WORK/stats.txt" | tr -d ' ')
rows=$(awk -F '\t' '{ s += $3 } END { print s + 0 }' "$WORK/stats.txt")

# 4. Sidecar, manifest, upload, prune.
write_sidecar "$WORK/$name" "$name"
{
  printf 'format\tmeshward-backup-1\n'
  printf 'kind\tpostgresql\n'
  printf 'database\t%s\n' "$PGDATABASE"
  printf 'file\t%s\n' "$name"
  printf 'sha256\t%s\n' "$(sha256_of "$WORK/$name")"
  printf 'created\t%s\n' "$(now_utc)"
  printf 'snapshot\t%s\n' "$snapshot"
  printf 'server\t%s\n' "$(psql_q -c 'SHOW server_version' 2>/dev/null || echo unknown)"
  cat "$WORK/stats.txt"
} >"$WORK/$prefix-$stamp.manifest"
log "manifest: $tables tables, $rows rows"
publish_backup "$WORK/$name" "$name" "$WORK/$prefix-$stamp.manifest"
prune "$prefix" "$stamp"
log "backup $prefix-$stamp complete"
