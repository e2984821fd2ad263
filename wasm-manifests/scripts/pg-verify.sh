#!/bin/sh
# pg-verify.sh: proves the latest PostgreSQL backup restores. Fetches the dump (or
# RESTORE_FROM), checks its sha256 against the sidecar and manifest, restores it into a
# scratch database (VERIFY_DATABASE, dropped and re-created, dropped again at the end), and
# compares every table's row count and content checksum with the manifest.
# Env: PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE BACKUP_DEST [VERIFY_DATABASE] [RESTORE_FROM].
# The role needs CREATEDB. See README.md beside this file for exit codes.
set -eu
SCRIPT_NAME=pg-verify
_lib="$(dirname "$0")/backup-lib.sh"
[ -r "$_lib" ] || {
  echo "pg-verify ERROR backup-lib.sh not found beside $0 (ship every file of scripts/)" >&2
  exit 2
}
. "$_lib"

require_env PGDATABASE BACKUP_DEST
require_tool psql pg_restore sha256sum awk sed sort
VERIFY_DATABASE=${VERIFY_DATABASE:-${PGDATABASE}_verify}
[ "$VERIFY_DATABASE" != "$PGDATABASE" ] ||
  die "$EX_CONFIG" "VERIFY_DATABASE must differ from PGDATABASE ('$PGDATABASE'): it is dropped"
store_open "$BACKUP_DEST"
init_work

prefix="pg-$(safe_name "$PGDATABASE")"
choose_backup "$prefix" dump
log "verifying backup $BACKUP_BASE from $STORE"
fetch_backup dump
[ "$(manifest_get kind)" = postgresql ] || die "$EX_INTEGRITY" "$BACKUP_BASE.manifest is not a PostgreSQL manifest"

# The archive's table of contents must read before anything is dropped.
if ! pg_restore -l "$BACKUP_FILE" >"$WORK/toc.txt" 2>"$WORK/toc.err"; then
  die "$EX_INTEGRITY" "$BACKUP_BASE.dump is not a readable pg_dump archive: $(head -c 500 "$WORK/toc.err")"
fi

# scratch_db SQL: runs SQL (with :"db" = the scratch database) while connected to PGDATABASE.
scratch_db() {
  printf '%s\n' "$1" | psql_q -d "$PGDATABASE" -v db="$VERIFY_DATABASE" -f - 2>"$WORK/scratch.err"
}
if ! scratch_db 'DROP DATABASE IF EXISTS :"db" WITH (FORCE);' || ! scratch_db 'CREATE DATABASE :"db";'; then
  die "$EX_FAIL" "cannot re-create scratch database '$VERIFY_DATABASE': $(head -c 500 "$WORK/scratch.err")"
fi
at_exit 'scratch_db '"'"'DROP DATABASE IF EXISTS :"db" WITH (FORCE);'"'"' || warn "could not drop scratch database $VERIFY_DATABASE"'
log "restoring into scratch database '$VERIFY_DATABASE'"

# Ownership and grants are not what is being verified; leaving them out means the verify
# role does not need the original roles to exist.
if ! pg_restore --exit-on-error --single-transaction --no-owner --no-privileges \
  -d "$VERIFY_DATABASE" "$BACKUP_FILE" 2>"$WORK/restore.err"; then
  die "$EX_INTEGRITY" "$BACKUP_BASE.dump does not restore: $(head -c 1000 "$WORK/restore.err")"
fi

pg_stats "$VERIFY_DATABASE" "$WORK/restored.txt"
if ! compare_tables "$MANIFEST" "$WORK/restored.txt" exact; then
  die "$EX_INTEGRITY" "backup $BACKUP_BASE does not match its manifest (see the lines above)"
fi
log "backup $BACKUP_BASE verified: $(grep -c '^table' "$WORK/restored.txt" || true) tables match the manifest"
