#!/bin/sh
# pg-restore.sh: restores a PostgreSQL backup (RESTORE_FROM, default the latest) into
# PGDATABASE in ONE transaction (pg_restore --clean --if-exists --single-transaction): either
# every object in the dump is replaced or, on any error, nothing changes. Then it checks every
# table of the manifest for row count and content checksum. Stop the service's writers first.
# Tables created after the backup are left alone (reported as a warning).
# Env: PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE BACKUP_DEST [RESTORE_FROM].
# See README.md beside this file for exit codes.
set -eu
SCRIPT_NAME=pg-restore
_lib="$(dirname "$0")/backup-lib.sh"
[ -r "$_lib" ] || {
  echo "pg-restore ERROR backup-lib.sh not found beside $0 (ship every file of scripts/)" >&2
  exit 2
}
. "$_lib"

require_env PGDATABASE BACKUP_DEST
require_tool psql pg_restore sha256sum awk sed sort
store_open "$BACKUP_DEST"
init_work

prefix="pg-$(safe_name "$PGDATABASE")"
choose_backup "$prefix" dump
log "restoring backup $BACKUP_BASE from $STORE into database '$PGDATABASE'"
# A corrupted or mismatched file stops here, before the database is touched.
fetch_backup dump
[ "$(manifest_get kind)" = postgresql ] || die "$EX_INTEGRITY" "$BACKUP_BASE.manifest is not a PostgreSQL manifest"
if ! pg_restore -l "$BACKUP_FILE" >"$WORK/toc.txt" 2>"$WORK/toc.err"; then
  die "$EX_INTEGRITY" "$BACKUP_BASE.dump is not a readable pg_dump archive: $(head -c 500 "$WORK/toc.err")"
fi

if ! pg_restore --clean --if-exists --exit-on-error --single-transaction \
  -d "$PGDATABASE" "$BACKUP_FILE" 2>"$WORK/restore.err"; then
  die "$EX_FAIL" "pg_restore into '$PGDATABASE' failed and was rolled back: $(head -c 1000 "$WORK/restore.err")"
fi
log "pg_restore committed"

pg_stats "$PGDATABASE" "$WORK/restored.txt"
if ! compare_tables "$MANIFEST" "$WORK/restored.txt" restore; then
  die "$EX_INTEGRITY" "database '$PGDATABASE' does not match $BACKUP_BASE.manifest after the restore (writers running?)"
fi
log "restore of $BACKUP_BASE into '$PGDATABASE' complete and verified"
