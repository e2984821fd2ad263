# backup-lib.sh: helpers shared by the meshward backup scripts. It is sourced, never run.
#
# What it knows: logging and exit codes, the work directory and its clean-up, the backup
# store named by BACKUP_DEST (a local directory or s3://bucket/prefix through the `aws` CLI),
# backup file naming, retention pruning, and the two "content fingerprints" the scripts
# compare (PostgreSQL per-table row count + checksum, Redis key count + digest).
# What it must not know: which Kubernetes object runs the scripts, or any service's schema.
#
# POSIX sh only (tested with dash); callers run `set -eu` before sourcing it.

# ---- exit codes (documented in README.md) -----------------------------------------------
EX_FAIL=1       # a command or connection failed (pg_dump, redis-cli, upload, ...)
EX_CONFIG=2     # bad or missing environment variable, missing tool
EX_INTEGRITY=3  # checksum mismatch, unreadable backup, restored data differs from the manifest
EX_NOBACKUP=4   # no complete backup found where one was asked for

# ---- logging ------------------------------------------------------------------------------
now_utc() { date -u +%Y-%m-%dT%H:%M:%SZ; }
log() { printf '%s %s INFO %s\n' "$(now_utc)" "$SCRIPT_NAME" "$*" >&2; }
warn() { printf '%s %s WARN %s\n' "$(now_utc)" "$SCRIPT_NAME" "$*" >&2; }
die() {
  _code=$1
  shift
  printf '%s %s ERROR %s\n' "$(now_utc)" "$SCRIPT_NAME" "$*" >&2
  exit "$_code"
}

# must WHAT CMD [ARGS...]: run CMD; on failure exit EX_FAIL with "WHAT failed (exit N)".
must() {
  _what=$1
  shift
  if "$@"; then
    return 0
  else
    _rc=$?
    die "$EX_FAIL" "$_what failed (exit $_rc)"
  fi
}

# ---- environment checks -------------------------------------------------------------------
require_env() {
  for _v in "$@"; do
    eval "_val=\${$_v:-}"
    [ -n "$_val" ] || die "$EX_CONFIG" "environment variable $_v is required but not set"
  done
}

require_tool() {
  for _t in "$@"; do
    command -v "$_t" >/dev/null 2>&1 || die "$EX_CONFIG" "required tool '$_t' not found in PATH"
  done
}

# Sets RETENTION_DAYS from BACKUP_RETENTION_DAYS (default 7); a whole number of days.
read_retention() {
  RETENTION_DAYS=${BACKUP_RETENTION_DAYS:-7}
  case $RETENTION_DAYS in
    '' | *[!0-9]*) die "$EX_CONFIG" "BACKUP_RETENTION_DAYS must be a whole number of days, got '$RETENTION_DAYS'" ;;
  esac
  # Strip leading zeros so "07" is not read as octal by arithmetic.
  RETENTION_DAYS=$(printf '%s' "$RETENTION_DAYS" | sed 's/^0*//')
  RETENTION_DAYS=${RETENTION_DAYS:-0}
}

# ---- work directory and clean-up ----------------------------------------------------------
# at_exit CMD: run CMD (a shell string) when the script exits, newest first.
AT_EXIT=""
at_exit() {
  AT_EXIT="$1
$AT_EXIT"
}

run_at_exit() {
  _exit_rc=$?
  trap - EXIT
  # Each registered command runs even if an earlier one fails.
  # A here-document, not a pipe: the commands must run in this shell (to reap children).
  while IFS= read -r _cmd; do
    [ -n "$_cmd" ] || continue
    eval "$_cmd" || true
  done <<EOF_AT_EXIT
$AT_EXIT
EOF_AT_EXIT
  [ -n "${WORK:-}" ] && rm -rf "$WORK"
  exit "$_exit_rc"
}

# Creates WORK (a private temp dir) and installs the traps that clean it up.
init_work() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/meshward-backup.XXXXXX") || die "$EX_FAIL" "cannot create a temp directory"
  trap run_at_exit EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# pid_alive PID: true while PID runs (a zombie counts as gone).
pid_alive() {
  kill -0 "$1" 2>/dev/null || return 1
  if [ -r "/proc/$1/stat" ]; then
    case $(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1) in Z) return 1 ;; esac
  fi
  return 0
}

# wait_pid_gone PID SECONDS: wait for a child we signalled to exit, bounded.
wait_pid_gone() {
  _n=0
  while pid_alive "$1" && [ "$_n" -lt "$2" ]; do
    sleep 1
    _n=$((_n + 1))
  done
}

# ---- the backup store ---------------------------------------------------------------------
# store_open LOCATION: LOCATION is a directory or s3://bucket/prefix. Sets STORE_KIND and STORE.
store_open() {
  case $1 in
    s3://*)
      STORE_KIND=s3
      STORE="${1%/}/"
      require_tool aws
      ;;
    *://*)
      die "$EX_CONFIG" "backup location '$1' is neither a directory nor an s3:// URL"
      ;;
    *)
      STORE_KIND=dir
      STORE="${1%/}"
      [ -n "$STORE" ] || STORE=/
      ;;
  esac
}

# store_list: names of the files directly under the store, one per line.
store_list() {
  if [ "$STORE_KIND" = s3 ]; then
    # `aws s3 ls` exits 1 with no error text when the prefix is empty: that is an empty
    # listing, not a failure. Anything on stderr is a failure.
    _rc=0
    aws s3 ls "$STORE" >"$WORK/ls.out" 2>"$WORK/ls.err" || _rc=$?
    if [ "$_rc" -ne 0 ] && [ -s "$WORK/ls.err" ]; then
      die "$EX_FAIL" "listing $STORE failed (exit $_rc): $(head -c 500 "$WORK/ls.err")"
    fi
    # Lines are "DATE TIME SIZE NAME" for objects and "PRE name/" for sub-prefixes.
    awk '$1 != "PRE" && NF >= 4 { print $4 }' "$WORK/ls.out"
  else
    [ -d "$STORE" ] || return 0
    # Dot files are uploads in progress (see store_put); they are not listed.
    for _f in "$STORE"/*; do
      [ -f "$_f" ] && printf '%s\n' "${_f##*/}"
    done
    return 0
  fi
}

# store_put LOCAL_FILE NAME: upload; a local copy becomes visible only when complete.
store_put() {
  if [ "$STORE_KIND" = s3 ]; then
    must "upload of $2 to $STORE" aws s3 cp --only-show-errors "$1" "$STORE$2"
  else
    must "creating $STORE" mkdir -p "$STORE"
    must "copy of $2 to $STORE" cp "$1" "$STORE/.$2.part"
    must "rename of $2 in $STORE" mv -f "$STORE/.$2.part" "$STORE/$2"
  fi
}

# store_get NAME LOCAL_FILE
store_get() {
  if [ "$STORE_KIND" = s3 ]; then
    must "download of $STORE$1" aws s3 cp --only-show-errors "$STORE$1" "$2"
  else
    [ -f "$STORE/$1" ] || die "$EX_NOBACKUP" "$STORE/$1 does not exist"
    must "copy of $STORE/$1" cp "$STORE/$1" "$2"
  fi
}

# store_rm NAME
store_rm() {
  if [ "$STORE_KIND" = s3 ]; then
    must "removal of $STORE$1" aws s3 rm --only-show-errors "$STORE$1"
  else
    must "removal of $STORE/$1" rm -f "$STORE/$1"
  fi
}

# ---- naming -------------------------------------------------------------------------------
# A backup is <prefix>-<YYYYmmddTHHMMSSZ>.<ext> plus .<ext>.sha256 and .manifest; the
# manifest is uploaded last, so a backup without one is incomplete and never chosen.
stamp_utc() { date -u +%Y%m%dT%H%M%SZ; }

# unique_stamp PREFIX: a stamp no existing backup of PREFIX uses (two backups in the same
# second would otherwise overwrite each other's files). Waits at most 5 s.
unique_stamp() {
  store_list >"$WORK/stamp.list"
  _i=0
  while :; do
    _s=$(stamp_utc)
    grep -q "^$1-$_s\." "$WORK/stamp.list" || break
    _i=$((_i + 1))
    [ "$_i" -le 5 ] || die "$EX_FAIL" "backups named $1-$_s.* already exist"
    sleep 1
  done
  printf '%s\n' "$_s"
}

is_stamp() {
  case $1 in
    [0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z) return 0 ;;
    *) return 1 ;;
  esac
}

# safe_name TEXT: TEXT with anything but [A-Za-z0-9_.-] replaced by '_'.
safe_name() { printf '%s' "$1" | tr -c 'A-Za-z0-9_.-' '_'; }

# complete_stamps PREFIX: the stamps of complete backups (those with a manifest), oldest first.
complete_stamps() {
  store_list >"$WORK/list.txt"
  while IFS= read -r _f; do
    case $_f in
      "$1"-*.manifest)
        _s=${_f#"$1"-}
        _s=${_s%.manifest}
        if is_stamp "$_s"; then printf '%s\n' "$_s"; fi
        ;;
    esac
  done <"$WORK/list.txt" | LC_ALL=C sort
}

# choose_backup PREFIX EXT: sets BACKUP_BASE (e.g. pg-shop-20261128T214500Z) and opens the
# store it lives in. RESTORE_FROM may name a backup (any of its files, or its stamp) or a
# path/URL of its dump; unset, empty or "latest" means the latest complete backup in
# BACKUP_DEST.
choose_backup() {
  _from=${RESTORE_FROM:-latest}
  if [ "$_from" = latest ]; then
    complete_stamps "$1" >"$WORK/stamps.txt"
    _latest=$(tail -n 1 "$WORK/stamps.txt")
    [ -n "$_latest" ] || die "$EX_NOBACKUP" "no complete backup named $1-<stamp>.manifest in $BACKUP_DEST"
    BACKUP_BASE="$1-$_latest"
    return 0
  fi
  case $_from in
    */*)
      store_open "${_from%/*}"
      _from=${_from##*/}
      ;;
  esac
  _from=${_from%.sha256}
  _from=${_from%".$2"}
  _from=${_from%.manifest}
  if is_stamp "$_from"; then _from="$1-$_from"; fi
  BACKUP_BASE=$_from
}

# fetch_backup EXT: downloads $BACKUP_BASE.{EXT,EXT.sha256,manifest} into WORK and checks the
# file's sha256 against both the sidecar and the manifest. Sets BACKUP_FILE and MANIFEST.
fetch_backup() {
  BACKUP_FILE="$WORK/$BACKUP_BASE.$1"
  MANIFEST="$WORK/$BACKUP_BASE.manifest"
  store_list >"$WORK/list.txt"
  for _n in "$BACKUP_BASE.$1" "$BACKUP_BASE.$1.sha256" "$BACKUP_BASE.manifest"; do
    grep -qxF "$_n" "$WORK/list.txt" || die "$EX_NOBACKUP" "backup file $_n not found in $STORE"
  done
  store_get "$BACKUP_BASE.manifest" "$MANIFEST"
  store_get "$BACKUP_BASE.$1.sha256" "$BACKUP_FILE.sha256"
  store_get "$BACKUP_BASE.$1" "$BACKUP_FILE"
  [ "$(manifest_get format)" = meshward-backup-1 ] ||
    die "$EX_INTEGRITY" "$BACKUP_BASE.manifest is not a meshward-backup-1 manifest"
  _want=$(awk 'NR == 1 { print $1 }' "$BACKUP_FILE.sha256")
  _inman=$(manifest_get sha256)
  _got=$(sha256_of "$BACKUP_FILE")
  [ "$_want" = "$_inman" ] ||
    die "$EX_INTEGRITY" "sha256 sidecar ($_want) and manifest ($_inman) disagree for $BACKUP_BASE.$1"
  [ "$_got" = "$_want" ] ||
    die "$EX_INTEGRITY" "sha256 mismatch for $BACKUP_BASE.$1: expected $_want, got $_got (file corrupted)"
  log "fetched $BACKUP_BASE.$1 ($(wc -c <"$BACKUP_FILE" | tr -d ' ') bytes), sha256 ok"
}

sha256_of() { sha256sum "$1" | awk '{ print $1 }'; }

# manifest_get KEY: the value of the first "KEY<TAB>value" line of MANIFEST.
manifest_get() { awk -F '\t' -v k="$1" '$1 == k { print $2; exit }' "$MANIFEST"; }

# publish_backup LOCAL_FILE NAME MANIFEST_FILE: upload the file, its sha256 sidecar, then the
# manifest (last: its presence marks the backup complete).
publish_backup() {
  store_put "$1" "$2"
  store_put "$1.sha256" "$2.sha256"
  store_put "$3" "${2%.*}.manifest"
  log "uploaded $2, $2.sha256, ${2%.*}.manifest to $STORE"
}

# write_sidecar LOCAL_FILE NAME: writes LOCAL_FILE.sha256 in `sha256sum -c` format.
write_sidecar() {
  printf '%s  %s\n' "$(sha256_of "$1")" "$2" >"$1.sha256"
}

# prune PREFIX KEEP_STAMP: removes this prefix's backups whose stamp is older than
# RETENTION_DAYS, never KEEP_STAMP (the backup just made). Age comes from the stamp in the
# name, not the file time, so copies between buckets do not reset it.
prune() {
  _cut_epoch=$(($(date -u +%s) - RETENTION_DAYS * 86400))
  _cut=$(date -u -d "@$_cut_epoch" +%Y%m%d%H%M%S 2>/dev/null) ||
    die "$EX_CONFIG" "this 'date' cannot format an epoch (date -d @N); cannot prune"
  store_list >"$WORK/prune.list"
  _old=$(while IFS= read -r _f; do
    case $_f in
      "$1"-*)
        _s=${_f#"$1"-}
        _s=${_s%%.*}
        is_stamp "$_s" || continue
        [ "$_s" = "$2" ] && continue
        _d=$(printf '%s' "$_s" | tr -d 'TZ')
        [ "$_d" -lt "$_cut" ] && printf '%s\n' "$_s"
        ;;
    esac
  done <"$WORK/prune.list" | LC_ALL=C sort -u)
  _n=0
  for _s in $_old; do
    # The manifest goes first: a half-pruned backup is then incomplete, never "latest".
    for _f in $(grep -F "$1-$_s." "$WORK/prune.list" | awk '{ print (/\.manifest$/ ? 0 : 1), $0 }' | LC_ALL=C sort | cut -d' ' -f2-); do
      case $_f in "$1-$_s".*) store_rm "$_f" ;; esac
    done
    _n=$((_n + 1))
    log "pruned backup $1-$_s (older than $RETENTION_DAYS days)"
  done
  log "retention: $_n old backup(s) pruned, keeping $RETENTION_DAYS days"
}

# ---- PostgreSQL ---------------------------------------------------------------------------
# psql as the scripts use it: no psqlrc, unaligned, tuples only, stop on the first error.
psql_q() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

# write_pg_stats_sql FILE: SQL that prints one line per user table,
#   table<TAB><schema.table><TAB><row count><TAB><checksum>
# The checksum is md5 over two sums of 64-bit slices of md5(row text): independent of row
# order and physical layout (a restore rewrites ctids), computed in one streaming pass with
# no sort and no 1 GB string_agg limit. Session settings pin every locale/time dependent
# text form so a dump and its restore print the same row text.
write_pg_stats_sql() {
  cat >"$1" <<'SQL'
SET datestyle = 'ISO, YMD';
SET timezone = 'UTC';
SET intervalstyle = 'postgres';
SET extra_float_digits = 3;
SET bytea_output = 'hex';
SET lc_monetary = 'C';
SELECT format(
  'SELECT %L || E''\t'' || count(*) || E''\t'' || md5(coalesce(sum((''x'' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0) || '':'' || coalesce(sum((''x'' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)) FROM (SELECT md5(ROW(t.*)::text) AS h FROM %I.%I AS t) AS s',
  'table' || E'\t' || quote_ident(n.nspname) || '.' || quote_ident(c.relname),
  n.nspname, c.relname)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
  AND NOT EXISTS (
    SELECT 1 FROM pg_depend d
    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname, c.relname
\gexec
SQL
}

# pg_stats DBNAME OUT: the table lines of DBNAME, sorted.
pg_stats() {
  write_pg_stats_sql "$WORK/stats.sql"
  must "computing row counts and checksums in database $1" \
    psql_q -d "$1" -f "$WORK/stats.sql" -o "$WORK/stats.raw"
  LC_ALL=C sort "$WORK/stats.raw" >"$2"
}

# compare_tables EXPECTED ACTUAL MODE: compares table lines. MODE "exact" also fails on
# tables the manifest does not list; "restore" only warns about them. Returns 0 if equal.
compare_tables() {
  awk -F '\t' -v mode="$3" '
    NR == FNR { if ($1 == "table") { want[$2] = $3 "\t" $4; order[++n] = $2 }; next }
    $1 == "table" { got[$2] = $3 "\t" $4 }
    END {
      bad = 0
      for (i = 1; i <= n; i++) {
        t = order[i]
        if (!(t in got)) { print "ERROR table " t ": in the manifest but missing"; bad = 1; continue }
        split(want[t], w, "\t"); split(got[t], g, "\t")
        if (w[1] != g[1]) { print "ERROR table " t ": " w[1] " rows expected, " g[1] " found"; bad = 1 }
        else if (w[2] != g[2]) { print "ERROR table " t ": checksum " w[2] " expected, " g[2] " found (same row count, different content)"; bad = 1 }
        else print "OK table " t ": " g[1] " rows, checksum " g[2]
      }
      for (t in got) if (!(t in want)) {
        if (mode == "exact") { print "ERROR table " t ": present but not in the manifest"; bad = 1 }
        else print "WARN table " t ": present but not in the manifest (left as is)"
      }
      exit bad
    }' "$1" "$2" >"$WORK/compare.out" && _cmp=0 || _cmp=$?
  while IFS= read -r _line; do
    case $_line in
      ERROR*) printf '%s %s ERROR %s\n' "$(now_utc)" "$SCRIPT_NAME" "${_line#ERROR }" >&2 ;;
      WARN*) warn "${_line#WARN }" ;;
      *) log "${_line#OK }" ;;
    esac
  done <"$WORK/compare.out"
  return "$_cmp"
}

# ---- Redis --------------------------------------------------------------------------------
# redis_auth: hand REDIS_PASSWORD to redis-cli through the environment, never argv.
redis_auth() {
  if [ -n "${REDIS_PASSWORD:-}" ]; then
    REDISCLI_AUTH=$REDIS_PASSWORD
    export REDISCLI_AUTH
  else
    unset REDISCLI_AUTH || true
  fi
}

# One SCAN batch; for each key a line "P <sha1>" (no TTL: sha1 of type, name and a canonical
# value) or "V <sha1 of name>" (has a TTL: it may expire, so only counted). Sets and hash
# fields are hashed per element and sorted as hex, which does not depend on the server's
# LC_COLLATE (Lua's string '<' does). Stream consumer groups and exact TTLs are not covered.
REDIS_DIGEST_LUA='
local res = redis.call("SCAN", ARGV[1], "COUNT", ARGV[2])
local out = {res[1]}
local function enc(parts)
  local b = {}
  for i = 1, #parts do b[#b + 1] = #parts[i] .. ":" .. parts[i] end
  return table.concat(b, ",")
end
local function sorted_hashes(items)
  local h = {}
  for i = 1, #items do h[#h + 1] = redis.sha1hex(items[i]) end
  table.sort(h)
  return table.concat(h, ",")
end
for _, k in ipairs(res[2]) do
  local ttl = redis.call("PTTL", k)
  if ttl == -1 then
    local t = redis.call("TYPE", k)["ok"]
    local v
    if t == "string" then v = enc({redis.call("GET", k)})
    elseif t == "list" then v = enc(redis.call("LRANGE", k, 0, -1))
    elseif t == "set" then v = sorted_hashes(redis.call("SMEMBERS", k))
    elseif t == "zset" then v = enc(redis.call("ZRANGE", k, 0, -1, "WITHSCORES"))
    elseif t == "hash" then
      local h, pairs_ = redis.call("HGETALL", k), {}
      for i = 1, #h, 2 do pairs_[#pairs_ + 1] = enc({h[i], h[i + 1]}) end
      v = sorted_hashes(pairs_)
    elseif t == "stream" then
      local flat = {}
      for _, e in ipairs(redis.call("XRANGE", k, "-", "+")) do
        flat[#flat + 1] = e[1]
        flat[#flat + 1] = enc(e[2])
      end
      v = enc(flat)
    else v = enc({redis.call("DUMP", k)})
    end
    out[#out + 1] = "P " .. redis.sha1hex(t .. "\0" .. #k .. ":" .. k .. "\0" .. v)
  elseif ttl >= 0 then
    out[#out + 1] = "V " .. redis.sha1hex(k)
  end
end
return out
'

# tcli ARGS: redis-cli against the target (REDIS_HOST:REDIS_PORT, password from REDISCLI_AUTH).
tcli() { redis-cli --no-auth-warning -h "$REDIS_HOST" -p "$REDIS_PORT" "$@" </dev/null; }
# scli ARGS: redis-cli against the scratch server (unix socket, no password).
scli() { (
  unset REDISCLI_AUTH
  exec redis-cli -s "$WORK/scratch.sock" "$@" </dev/null
); }

# redis_stats OUT CLI: writes "keys N", "persistent N", "volatile N", "digest HEX" and one
# "db<TAB>N<TAB>keys" line per database to OUT (tab separated) for the server that CLI (tcli
# or scli) reaches. Reads in SCAN batches of 200 keys. Leaves the db list in $WORK/dbs.txt.
redis_stats() {
  _out=$1
  _cli=$2
  $_cli INFO keyspace >"$WORK/keyspace.raw" 2>&1 ||
    die "$EX_FAIL" "INFO keyspace failed: $(head -c 300 "$WORK/keyspace.raw")"
  tr -d '\r' <"$WORK/keyspace.raw" | sed -n 's/^db\([0-9][0-9]*\):keys=\([0-9][0-9]*\),.*/\1 \2/p' >"$WORK/dbs.txt"
  : >"$WORK/digest.lines"
  while read -r _db _keys; do
    _cursor=0
    while :; do
      $_cli -n "$_db" EVAL "$REDIS_DIGEST_LUA" 0 "$_cursor" 200 >"$WORK/batch.raw" 2>&1 ||
        die "$EX_FAIL" "digest script failed on db $_db: $(head -c 300 "$WORK/batch.raw")"
      _cursor=$(head -n 1 "$WORK/batch.raw")
      case $_cursor in
        '' | *[!0-9]*) die "$EX_FAIL" "digest script on db $_db returned '$(head -c 300 "$WORK/batch.raw")'" ;;
      esac
      if sed 1d "$WORK/batch.raw" | grep -vqE '^[PV] [0-9a-f]{40}$'; then
        die "$EX_FAIL" "digest script on db $_db returned an unexpected line: $(sed 1d "$WORK/batch.raw" | grep -vE '^[PV] [0-9a-f]{40}$' | head -n 1)"
      fi
      sed 1d "$WORK/batch.raw" | sed "s/^/$_db /" >>"$WORK/digest.lines"
      [ "$_cursor" = 0 ] && break
    done
  done <"$WORK/dbs.txt"
  # SCAN may return a key twice (rehashing); count each key once.
  LC_ALL=C sort -u "$WORK/digest.lines" >"$WORK/digest.sorted"
  {
    printf 'keys\t%s\n' "$(wc -l <"$WORK/digest.sorted" | tr -d ' ')"
    printf 'persistent\t%s\n' "$(grep -c '^[0-9]* P ' "$WORK/digest.sorted" || true)"
    printf 'volatile\t%s\n' "$(grep -c '^[0-9]* V ' "$WORK/digest.sorted" || true)"
    printf 'digest\t%s\n' "$(grep '^[0-9]* P ' "$WORK/digest.sorted" | sha256sum | awk '{ print $1 }')"
    awk '{ n[$1]++ } END { for (d in n) printf "db\t%s\t%s\n", d, n[d] }' "$WORK/digest.sorted" | LC_ALL=C sort -n -k2
  } >"$_out"
}

# stats_get FILE KEY
stats_get() { awk -F '\t' -v k="$2" '$1 == k { print $2; exit }' "$1"; }

# scratch_redis_start RDB_DIR RDB_NAME: starts a private redis-server that loads the RDB,
# reachable only through the unix socket $WORK/scratch.sock (no TCP port, nothing to
# collide with), never saving. Sets SCRATCH_PID. Waits up to 600 s for the load to finish.
scratch_redis_start() {
  require_tool redis-server
  mkdir -p "$WORK/scratch"
  redis-server --port 0 --unixsocket "$WORK/scratch.sock" --unixsocketperm 700 \
    --dir "$1" --dbfilename "$2" --save '' --appendonly no --databases 64 \
    --daemonize no --logfile "$WORK/scratch/redis.log" &
  SCRATCH_PID=$!
  at_exit "scratch_redis_stop"
  _n=0
  while :; do
    if ! pid_alive "$SCRATCH_PID"; then
      die "$EX_INTEGRITY" "$2 did not load into a scratch redis-server: $(tail -n 5 "$WORK/scratch/redis.log" | tr '\n' ' ')"
    fi
    _pong=$(scli PING 2>/dev/null || true)
    [ "$_pong" = PONG ] && break
    _n=$((_n + 1))
    [ "$_n" -le 600 ] || die "$EX_FAIL" "scratch redis-server did not finish loading $2 within 600 s"
    sleep 1
  done
  log "loaded $2 into a scratch redis-server (pid $SCRATCH_PID)"
}

scratch_redis_stop() {
  [ -n "${SCRATCH_PID:-}" ] || return 0
  kill "$SCRATCH_PID" 2>/dev/null || true
  wait_pid_gone "$SCRATCH_PID" 30
  kill -9 "$SCRATCH_PID" 2>/dev/null || true
  wait "$SCRATCH_PID" 2>/dev/null || true
  SCRATCH_PID=""
}
