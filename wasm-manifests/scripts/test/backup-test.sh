#!/usr/bin/env bash
# backup-test.sh: end-to-end test of the backup scripts against a REAL PostgreSQL and a REAL
# Redis that it starts itself (127.0.0.1, free high ports, a temp dir; stopped and removed on
# exit). The scripts run under dash (or /bin/sh) exactly as the Kubernetes Jobs run them,
# configured only through their environment variables.
#
# It checks: backup -> damage -> restore gives back the pre-damage data (row counts and an
# md5 computed here, independently of the scripts' own manifest SQL; for Redis DEBUG DIGEST
# and DBSIZE per database); verify passes on a good dump and fails on a flipped byte, on a
# dump whose checksums were forged, and on a manifest that disagrees; a failed restore
# leaves the target untouched; retention prunes old backups and nothing else; the s3://
# path works through a stand-in `aws`; exit codes for bad config and missing backups.
#
# Exit 0: all passed. Exit 77: a tool is missing (skipped) unless MESHWARD_REQUIRE_TOOLS=1,
# then exit 1. Any failed check: exit 1 with the check named.
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)   # wasm-manifests/scripts
SH=${BACKUP_TEST_SH:-$(command -v dash || echo /bin/sh)}
PASSED=0
FAILED=0

say() { printf '[backup-test] %s\n' "$*"; }
pass() { PASSED=$((PASSED + 1)); say "ok   - $*"; }
fail() { FAILED=$((FAILED + 1)); say "FAIL - $*"; }
fatal() { say "FATAL: $*"; exit 1; }
check() { # check NAME CMD... : pass if CMD succeeds
  local name=$1; shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}

# ---- tools ----------------------------------------------------------------------------------
PGBIN=""
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n -r); do
  [ -x "$d/initdb" ] && { PGBIN=$d; break; }
done
if [ -z "$PGBIN" ] && command -v initdb >/dev/null 2>&1; then PGBIN=$(dirname "$(command -v initdb)"); fi
missing=()
[ -n "$PGBIN" ] || missing+=(initdb)
for t in redis-server redis-cli sha256sum; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
if [ -n "$PGBIN" ]; then
  for t in pg_ctl psql pg_dump pg_restore; do [ -x "$PGBIN/$t" ] || missing+=("$t"); done
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "${MESHWARD_REQUIRE_TOOLS:-}" = 1 ]; then
    fatal "missing tools: ${missing[*]} (MESHWARD_REQUIRE_TOOLS=1; install: apt-get install postgresql redis-server)"
  fi
  say "SKIP: missing tools: ${missing[*]} (apt-get install postgresql redis-server)"
  exit 77
fi
export PATH="$PGBIN:$PATH"
say "PostgreSQL from $PGBIN, $(redis-server --version | cut -d' ' -f3), scripts run by $SH"

# ---- temp dir, servers, clean-up -----------------------------------------------------------
T=$(mktemp -d /tmp/meshward-backup-test.XXXXXX)
chmod 755 "$T"
REDIS_PID=""
PG_STARTED=0
RUNAS=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || fatal "running as root but there is no 'postgres' user to run the server"
  RUNAS=(runuser -u postgres --)
fi
cleanup() {
  local rc=$?
  set +e
  if [ "$PG_STARTED" = 1 ]; then "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$T/pg/data" -m immediate -w -t 30 stop >/dev/null 2>&1; fi
  if [ -n "$REDIS_PID" ]; then
    kill "$REDIS_PID" 2>/dev/null
    for _ in $(seq 1 30); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$REDIS_PID" 2>/dev/null
    wait "$REDIS_PID" 2>/dev/null
  fi
  rm -rf "$T"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  fatal "no free port found"
}

# PostgreSQL: superuser 'postgres' and an ordinary owner role 'app' (CREATEDB) that the
# scripts use, both with passwords (scram), TCP on 127.0.0.1 only.
PGPORT_T=$(free_port)
mkdir -p "$T/pg/sock"
printf 'superpw\n' >"$T/pg/pw"
[ ${#RUNAS[@]} -eq 0 ] || chown -R postgres "$T/pg"
"${RUNAS[@]}" "$PGBIN/initdb" -D "$T/pg/data" -U postgres --pwfile="$T/pg/pw" --auth=scram-sha-256 \
  -E UTF8 --locale=C >"$T/initdb.log" 2>&1 || { cat "$T/initdb.log"; fatal "initdb failed"; }
"${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$T/pg/data" -l "$T/pg/server.log" -w -t 60 \
  -o "-p $PGPORT_T -k $T/pg/sock -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null ||
  { cat "$T/pg/server.log"; fatal "PostgreSQL did not start"; }
PG_STARTED=1
su_psql() { PGPASSWORD=superpw psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT_T" -U postgres "$@"; }
su_psql -d postgres -c "CREATE ROLE app LOGIN CREATEDB PASSWORD 'apppw'" -c "CREATE DATABASE shop OWNER app"
say "PostgreSQL on 127.0.0.1:$PGPORT_T"

# Redis with a password and the DEBUG command (the test's independent fingerprint).
REDIS_PORT_T=$(free_port)
mkdir -p "$T/redis"
redis-server --port "$REDIS_PORT_T" --bind 127.0.0.1 --requirepass redispw --dir "$T/redis" \
  --save '' --appendonly no --daemonize no --enable-debug-command yes \
  --logfile "$T/redis/server.log" &
REDIS_PID=$!
rcli() { REDISCLI_AUTH=redispw redis-cli --no-auth-warning -h 127.0.0.1 -p "$REDIS_PORT_T" "$@"; }
for _ in $(seq 1 50); do [ "$(rcli PING 2>/dev/null)" = PONG ] && break; sleep 0.2; done
[ "$(rcli PING 2>/dev/null)" = PONG ] || { cat "$T/redis/server.log"; fatal "redis-server did not start"; }
say "Redis on 127.0.0.1:$REDIS_PORT_T"

# ---- running the scripts --------------------------------------------------------------------
# run_script OUTFILE SCRIPT [VAR=value ...]: runs the script under $SH with only the contract's
# environment (plus PATH/HOME/TMPDIR); returns its exit code; output in OUTFILE.
run_script() {
  local out=$1 script=$2; shift 2
  local rc=0
  env -i PATH="$PATH" HOME="$T" TMPDIR="$T" LANG=C.UTF-8 \
    PGHOST=127.0.0.1 PGPORT="$PGPORT_T" PGUSER=app PGPASSWORD=apppw PGDATABASE=shop \
    REDIS_HOST=127.0.0.1 REDIS_PORT="$REDIS_PORT_T" REDIS_PASSWORD=redispw \
    BACKUP_DEST="$T/store" FAKE_S3_ROOT="$T/s3" "$@" \
    "${SCRIPT_RUNNER[@]}" "$SH" "$HERE/$script" >"$out" 2>&1 || rc=$?
  return "$rc"
}
SCRIPT_RUNNER=()   # e.g. (setpriv --reuid=...) to run the scripts as another user
# expect_rc CODE NAME OUTFILE SCRIPT [VAR=value ...]
expect_rc() {
  local want=$1 name=$2 out=$3; shift 3
  local rc=0
  run_script "$out" "$@" || rc=$?
  if [ "$rc" = "$want" ]; then pass "$name (exit $rc)"; else
    fail "$name: exit $rc, expected $want"; sed 's/^/    | /' "$out"
  fi
}
# expect_log NAME OUTFILE REGEX
expect_log() {
  if grep -Eq "$3" "$2"; then pass "$1"; else fail "$1: no line matching /$3/ in:"; sed 's/^/    | /' "$2"; fi
}

# ---- PostgreSQL data --------------------------------------------------------------------------
app_psql() { PGPASSWORD=apppw psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT_T" -U app "$@"; }
app_psql -d shop >/dev/null <<'SQL'
CREATE SCHEMA billing;
CREATE TABLE customers (
  id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE NOT NULL,
  created_at timestamptz NOT NULL, balance numeric(12,2) NOT NULL DEFAULT 0, tags text[]);
CREATE TABLE products (sku text PRIMARY KEY, title text NOT NULL, price numeric(10,2) NOT NULL, weight_kg double precision);
CREATE TABLE orders (
  id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id),
  placed_at timestamptz NOT NULL, status text NOT NULL, note text, meta jsonb);
CREATE TABLE order_items (
  order_id bigint REFERENCES orders(id), line int, sku text REFERENCES products(sku),
  qty int NOT NULL, unit_price numeric(10,2) NOT NULL, PRIMARY KEY (order_id, line));
CREATE TABLE audit_log (at timestamptz, actor text, action text);  -- no primary key
CREATE TABLE billing.invoices (id int PRIMARY KEY, order_id bigint, pdf bytea, issued date, ratio real);
INSERT INTO customers (name, email, created_at, balance, tags)
  SELECT 'Customer ' || i, 'c' || i || '@example.test', timestamptz '2025-01-01 00:00+00' + i * interval '37 minutes',
         (i * 7919 % 100000) / 100.0, CASE WHEN i % 3 = 0 THEN ARRAY['vip', 'tier' || (i % 5)] END
  FROM generate_series(1, 1500) i;
INSERT INTO products SELECT 'SKU-' || lpad(i::text, 4, '0'), 'Product "' || i || E'"\twith tab', (i % 97) + 0.99, i / 3.0
  FROM generate_series(1, 300) i;
INSERT INTO orders (customer_id, placed_at, status, note, meta)
  SELECT 1 + (i * 13) % 1500, timestamptz '2025-06-01 12:00+02' + i * interval '11 minutes',
         (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + i % 4],
         CASE WHEN i % 10 = 0 THEN 'gift, with ''quotes'' and ünïcode' END,
         jsonb_build_object('channel', CASE WHEN i % 2 = 0 THEN 'web' ELSE 'app' END, 'n', i)
  FROM generate_series(1, 4000) i;
INSERT INTO order_items SELECT o, l, 'SKU-' || lpad((1 + (o * l) % 300)::text, 4, '0'), 1 + (o + l) % 5, 9.99 + l
  FROM generate_series(1, 4000) o, generate_series(1, 2) l;
INSERT INTO audit_log SELECT timestamptz '2025-01-01' + i * interval '1 hour', 'user' || (i % 17), 'action ' || i
  FROM generate_series(1, 600) i;
INSERT INTO audit_log SELECT * FROM audit_log LIMIT 5;  -- duplicate rows, no key to tell them apart
INSERT INTO billing.invoices SELECT i, i, decode(md5(i::text), 'hex'), date '2025-01-01' + i, i / 7.0
  FROM generate_series(1, 1000) i;
SQL

# An independent fingerprint: per table, row count and md5 of all row texts sorted.
PG_TABLES="public.customers public.products public.orders public.order_items public.audit_log billing.invoices"
pg_fingerprint() {
  local t
  for t in $PG_TABLES; do
    app_psql -d "${1:-shop}" -c "SET timezone='UTC'" \
      -c "SELECT '$t', count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text COLLATE \"C\"), '')) FROM $t x" 2>&1 || echo "$t unreadable"
  done
}
pg_fingerprint >"$T/pg.before"
grep -q 'public.orders|4000|' "$T/pg.before" || fatal "test data not created: $(cat "$T/pg.before")"

# flip_byte FILE: inverts one byte in the middle of FILE.
flip_byte() {
  local f=$1 size off b
  size=$(stat -c %s "$f"); off=$((size / 2))
  b=$(od -An -tu1 -j "$off" -N1 "$f" | tr -d ' ')
  printf "$(printf '\\%03o' $((255 - b)))" | dd of="$f" bs=1 seek="$off" count=1 conv=notrunc 2>/dev/null
}
# reseal STORE BASE EXT: recompute the sidecar and manifest sha256 (a file corrupted BEFORE
# it was checksummed: only the restore and the content comparison can catch it).
reseal() {
  local sum; sum=$(sha256sum "$1/$2.$3" | cut -d' ' -f1)
  printf '%s  %s\n' "$sum" "$2.$3" >"$1/$2.$3.sha256"
  sed -i "s/^sha256\t.*/sha256\t$sum/" "$1/$2.manifest"
}
mkdir -p "$T/bin" "$T/empty"; cp "$HERE/test/fake-aws" "$T/bin/aws"; chmod +x "$T/bin/aws"
S3PATH="$T/bin:$PATH"
ONLY=${BACKUP_TEST_ONLY:-}   # "pg" or "redis" to run one half while developing
if [ "$ONLY" != redis ]; then
# ---- PostgreSQL: backup, verify -------------------------------------------------------------
say "--- PostgreSQL"
expect_rc 0 "pg-backup succeeds" "$T/out" pg-backup.sh
expect_log "pg-backup logs timestamped lines" "$T/out" '^20[0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9:]+Z pg-backup INFO '
DUMP=$(cd "$T/store" && ls pg-shop-*.dump)
BASE=${DUMP%.dump}
check "dump, sidecar and manifest uploaded" test -s "$T/store/$DUMP" -a -s "$T/store/$DUMP.sha256" -a -s "$T/store/$BASE.manifest"
check "sidecar passes sha256sum -c" bash -c "cd '$T/store' && sha256sum -c --quiet '$DUMP.sha256'"
check "dump is a custom-format archive" bash -c "pg_restore -l '$T/store/$DUMP' | grep -q 'TABLE DATA public orders'"
check "manifest lists 6 tables" test "$(grep -c '^table' "$T/store/$BASE.manifest")" = 6
check "manifest row count of orders is 4000" grep -qP '^table\tpublic.orders\t4000\t[0-9a-f]{32}$' "$T/store/$BASE.manifest"
check "manifest row count of audit_log counts duplicates (605)" grep -qP '^table\tpublic.audit_log\t605\t' "$T/store/$BASE.manifest"
check "manifest lists the billing schema" grep -qP '^table\tbilling.invoices\t1000\t' "$T/store/$BASE.manifest"

expect_rc 0 "pg-verify passes on a good dump" "$T/out" pg-verify.sh
expect_log "pg-verify reports every table" "$T/out" 'table public.order_items: 8000 rows'
check "pg-verify dropped its scratch database" test -z "$(su_psql -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'shop_verify'")"
expect_rc 0 "pg-verify honours VERIFY_DATABASE" "$T/out" pg-verify.sh VERIFY_DATABASE=scratch_check
expect_log "pg-verify used VERIFY_DATABASE" "$T/out" "scratch database 'scratch_check'"
expect_rc 2 "pg-verify refuses VERIFY_DATABASE = PGDATABASE" "$T/out" pg-verify.sh VERIFY_DATABASE=shop

# ---- PostgreSQL: damage, restore --------------------------------------------------------------
app_psql -d shop >/dev/null <<'SQL'
DELETE FROM order_items WHERE order_id % 7 = 0;
DELETE FROM orders WHERE id % 7 = 0;
DROP TABLE order_items;
UPDATE customers SET balance = balance + 1 WHERE id < 50;
UPDATE products SET title = 'broken' WHERE sku = 'SKU-0007';
DELETE FROM audit_log WHERE actor = 'user3';
TRUNCATE billing.invoices;
CREATE TABLE created_after_backup (x int);
INSERT INTO created_after_backup VALUES (1), (2);
SQL
pg_fingerprint >"$T/pg.damaged"
check "damage changed the fingerprint" bash -c "! cmp -s '$T/pg.before' '$T/pg.damaged'"

expect_rc 0 "pg-restore restores the latest backup" "$T/out" pg-restore.sh
expect_log "pg-restore verified against the manifest" "$T/out" 'complete and verified'
expect_log "pg-restore warns about a table newer than the backup" "$T/out" 'WARN table public.created_after_backup'
pg_fingerprint >"$T/pg.after"
if cmp -s "$T/pg.before" "$T/pg.after"; then pass "restored data equals the pre-damage data (counts + md5 per table)"; else
  fail "restored data differs from the pre-damage data"; diff "$T/pg.before" "$T/pg.after" | sed 's/^/    | /'
fi
check "restore keeps the owner 'app'" test "$(app_psql -d shop -c "SELECT tableowner FROM pg_tables WHERE tablename = 'order_items'")" = app
check "restore leaves newer tables alone" test "$(app_psql -d shop -c 'SELECT count(*) FROM created_after_backup')" = 2

# ---- PostgreSQL: verify must fail on bad backups ----------------------------------------------
cp -r "$T/store" "$T/bad1"; flip_byte "$T/bad1/$DUMP"
expect_rc 3 "pg-verify fails on a dump with a flipped byte" "$T/out" pg-verify.sh BACKUP_DEST="$T/bad1"
expect_log "... naming the sha256 mismatch" "$T/out" "ERROR sha256 mismatch for $DUMP"
pg_fingerprint >"$T/pg.pre-badrestore"
expect_rc 3 "pg-restore refuses a dump with a flipped byte" "$T/out" pg-restore.sh BACKUP_DEST="$T/bad1"
pg_fingerprint >"$T/pg.post-badrestore"
check "... and leaves the database untouched" cmp -s "$T/pg.pre-badrestore" "$T/pg.post-badrestore"

cp -r "$T/store" "$T/bad2"
# Corrupt the table data stream (past the header and TOC), then make the checksums agree.
size=$(stat -c %s "$T/bad2/$DUMP")
printf 'garbage-garbage-garbage' | dd of="$T/bad2/$DUMP" bs=1 seek=$((size * 3 / 4)) conv=notrunc 2>/dev/null
reseal "$T/bad2" "$BASE" dump
expect_rc 3 "pg-verify fails on a corrupt dump whose checksums were recomputed" "$T/out" pg-verify.sh BACKUP_DEST="$T/bad2"
check "... and still drops its scratch database" test -z "$(su_psql -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'shop_verify'")"

cp -r "$T/store" "$T/bad3"
sed -i 's/^\(table\tpublic.orders\t\)4000\t/\14001\t/' "$T/bad3/$BASE.manifest"
expect_rc 3 "pg-verify fails when the manifest's row count disagrees" "$T/out" pg-verify.sh BACKUP_DEST="$T/bad3"
expect_log "... naming the table and both counts" "$T/out" 'ERROR table public.orders: 4001 rows expected, 4000 found'
cp -r "$T/store" "$T/bad4"
sed -i 's/^\(table\tpublic.customers\t1500\t\).*/\100000000000000000000000000000000/' "$T/bad4/$BASE.manifest"
expect_rc 3 "pg-verify fails when the manifest's checksum disagrees" "$T/out" pg-verify.sh BACKUP_DEST="$T/bad4"
expect_log "... naming the table" "$T/out" 'ERROR table public.customers: checksum'
cp -r "$T/store" "$T/bad5"
printf 'table\tpublic.vanished\t3\t00000000000000000000000000000000\n' >>"$T/bad5/$BASE.manifest"
expect_rc 3 "pg-verify fails when a manifest table is missing from the dump" "$T/out" pg-verify.sh BACKUP_DEST="$T/bad5"
cp -r "$T/store" "$T/bad6"; rm "$T/bad6/$DUMP.sha256"
expect_rc 4 "pg-verify: a backup without its sidecar is not complete" "$T/out" pg-verify.sh BACKUP_DEST="$T/bad6" RESTORE_FROM="$BASE"
expect_rc 4 "pg-verify: no backup at BACKUP_DEST" "$T/out" pg-verify.sh BACKUP_DEST="$T/empty"
expect_rc 4 "pg-restore: no backup at BACKUP_DEST" "$T/out" pg-restore.sh BACKUP_DEST="$T/empty"
expect_rc 2 "pg-backup: BACKUP_DEST unset" "$T/out" pg-backup.sh BACKUP_DEST=
expect_log "... naming the variable" "$T/out" 'BACKUP_DEST is required'
expect_rc 2 "pg-backup: bad BACKUP_RETENTION_DAYS" "$T/out" pg-backup.sh BACKUP_RETENTION_DAYS=7d
expect_rc 1 "pg-backup: wrong password fails" "$T/out" pg-backup.sh PGPASSWORD=nope
expect_log "... with the server's message" "$T/out" 'password authentication failed'

# ---- PostgreSQL: RESTORE_FROM an older backup, retention -------------------------------------
app_psql -d shop -c "INSERT INTO customers (name, email, created_at) VALUES ('Late', 'late@example.test', now())" >/dev/null
pg_fingerprint >"$T/pg.second"
expect_rc 0 "pg-backup of changed data" "$T/out" pg-backup.sh
check "two backups now" test "$(ls "$T/store"/pg-shop-*.manifest | wc -l)" = 2
expect_rc 4 "pg-restore RESTORE_FROM=<a backup that does not exist>" "$T/out" pg-restore.sh RESTORE_FROM=pg-shop-20000101T000000Z
expect_rc 0 "pg-restore RESTORE_FROM=<first backup's dump path>" "$T/out" pg-restore.sh RESTORE_FROM="$T/store/$DUMP"
pg_fingerprint >"$T/pg.after2"
check "RESTORE_FROM picked the first backup" cmp -s "$T/pg.before" "$T/pg.after2"
expect_rc 0 "pg-restore of the latest (second) backup, RESTORE_FROM=latest" "$T/out" pg-restore.sh RESTORE_FROM=latest
pg_fingerprint >"$T/pg.after3"
check "latest is the second backup" cmp -s "$T/pg.second" "$T/pg.after3"

old=pg-shop-$(date -u -d '30 days ago' +%Y%m%dT%H%M%SZ)
recent=pg-shop-$(date -u -d '3 days ago' +%Y%m%dT%H%M%SZ)
for b in "$old" "$recent"; do
  for ext in dump dump.sha256 manifest; do echo fake >"$T/store/$b.$ext"; done
done
touch -d '30 days ago' "$T/store/$old".*
touch -d '3 days ago' "$T/store/$recent".*
echo "not ours" >"$T/store/notes.txt"; touch -d '90 days ago' "$T/store/notes.txt"
echo "other db" >"$T/store/pg-other-20200101T000000Z.dump"
expect_rc 0 "pg-backup with BACKUP_RETENTION_DAYS=7" "$T/out" pg-backup.sh BACKUP_RETENTION_DAYS=7
check "backup older than 7 days pruned (all three files)" test -z "$(ls "$T/store" | grep -F "$old")"
check "backup 3 days old kept" test "$(ls "$T/store" | grep -cF "$recent")" = 3
check "unrelated files kept" test -f "$T/store/notes.txt" -a -f "$T/store/pg-other-20200101T000000Z.dump"
expect_log "pruning is logged" "$T/out" "pruned backup $old"
expect_rc 0 "pg-backup with BACKUP_RETENTION_DAYS=0 keeps only the new backup" "$T/out" pg-backup.sh BACKUP_RETENTION_DAYS=0
check "... exactly one pg-shop backup left" test "$(ls "$T/store" | grep -c '^pg-shop-')" = 3
expect_rc 0 "pg-verify after pruning" "$T/out" pg-verify.sh

# ---- PostgreSQL through s3:// (stand-in aws CLI) -----------------------------------------------
expect_rc 4 "pg-verify on an empty s3 prefix: no backup" "$T/out" pg-verify.sh PATH="$S3PATH" BACKUP_DEST=s3://bucket/shop/pg
expect_log "... reported as such (aws ls exit 1 = empty)" "$T/out" 'no complete backup'
expect_rc 0 "pg-backup to s3://" "$T/out" pg-backup.sh PATH="$S3PATH" BACKUP_DEST=s3://bucket/shop/pg
check "objects written under the s3 prefix" test "$(ls "$T/s3/bucket/shop/pg" | grep -c '^pg-shop-')" = 3
expect_rc 0 "pg-verify from s3://" "$T/out" pg-verify.sh PATH="$S3PATH" BACKUP_DEST=s3://bucket/shop/pg
expect_rc 2 "s3:// without an aws CLI is a config error" "$T/out" pg-backup.sh BACKUP_DEST=s3://bucket/shop/pg PATH="$PGBIN:/usr/bin:/bin"

# ---- PostgreSQL: the checksum notices one changed value ------------------------------------
# Two backups one UPDATE apart; the second dump presented with the first one's manifest (its
# sha256 fixed up) must fail on exactly that table, with equal row counts.
expect_rc 0 "pg-backup A" "$T/out" pg-backup.sh BACKUP_DEST="$T/swapA"
app_psql -d shop -c "UPDATE products SET price = price + 0.01 WHERE sku = 'SKU-0042'" >/dev/null
expect_rc 0 "pg-backup B (one price changed)" "$T/out" pg-backup.sh BACKUP_DEST="$T/swapB"
a_base=$(cd "$T/swapA" && ls *.manifest); a_base=${a_base%.manifest}
b_base=$(cd "$T/swapB" && ls *.manifest); b_base=${b_base%.manifest}
cp "$T/swapB/$b_base.dump" "$T/swapA/$a_base.dump"
reseal "$T/swapA" "$a_base" dump
expect_rc 3 "pg-verify: a dump differing in one value from its manifest fails" "$T/out" pg-verify.sh BACKUP_DEST="$T/swapA"
expect_log "... naming public.products, same row count, different content" "$T/out" 'ERROR table public.products: checksum .* \(same row count, different content\)'
check "... and only that table" test "$(grep -c 'ERROR table' "$T/out")" = 1

# ---- PostgreSQL: a backup taken while the service writes -----------------------------------
# A writer commits an order every few ms until told to stop (at most ~60 s). The backup runs
# between writes; the dump and the manifest must still agree (one exported snapshot), so
# verify passes, and the manifest's count lies strictly between before and after.
app_psql -d shop -c 'CREATE TABLE stop_writer (x int)' >/dev/null
count_orders() { app_psql -d shop -c 'SELECT count(*) FROM orders'; }
n0=$(count_orders)
app_psql -d shop -c "DO \$\$ DECLARE i int := 0; BEGIN
  LOOP
    EXIT WHEN EXISTS (SELECT 1 FROM stop_writer) OR i > 12000;
    INSERT INTO orders (customer_id, placed_at, status) VALUES (1, now(), 'concurrent');
    COMMIT;
    PERFORM pg_sleep(0.005);
    i := i + 1;
  END LOOP; END \$\$" >/dev/null 2>"$T/writer.err" &
WRITER=$!
for _ in $(seq 1 100); do [ "$(count_orders)" -gt "$n0" ] && break; sleep 0.1; done
expect_rc 0 "pg-backup while a writer commits" "$T/out" pg-backup.sh BACKUP_DEST="$T/concurrent"
nm=$(grep -P '^table\tpublic.orders\t' "$T/concurrent"/*.manifest | cut -f3)
for _ in $(seq 1 100); do [ "$(count_orders)" -gt "$nm" ] && break; sleep 0.1; done
app_psql -d shop -c 'INSERT INTO stop_writer VALUES (1)' >/dev/null
wait "$WRITER" || fail "writer failed: $(cat "$T/writer.err")"
n1=$(count_orders)
check "writes happened before and after the backup's snapshot ($n0 < $nm < $n1)" test "$n0" -lt "$nm" -a "$nm" -lt "$n1"
expect_rc 0 "pg-verify: the dump taken under writes matches its manifest" "$T/out" pg-verify.sh BACKUP_DEST="$T/concurrent"

fi

if [ "$ONLY" != pg ]; then
# ---- Redis data -------------------------------------------------------------------------------
say "--- Redis"
rcli EVAL '
for i = 1, 2000 do
  redis.call("SET", "session:" .. i, "token-" .. (i * 7919))
end
for i = 1, 300 do
  redis.call("HSET", "customer:" .. i, "name", "Customer " .. i, "email", "c" .. i .. "@example.test", "balance", tostring(i * 3.5))
  redis.call("RPUSH", "orders:" .. i, "o" .. i, "o" .. (i + 1), "o" .. (i + 2))
  redis.call("ZADD", "leaderboard", i * 1.25, "player" .. i)
end
for i = 1, 1000 do redis.call("SADD", "big-set", "member" .. i) end
for i = 1, 500 do redis.call("HSET", "big-hash", "f" .. i, string.rep("v", i % 50)) end
for i = 1, 20 do redis.call("XADD", "events", "*", "type", "click", "n", tostring(i)) end
redis.call("SET", "bin\0key\nwith newline", "\0\1\2\255 binary value")
for i = 1, 50 do redis.call("SET", "cache:" .. i, "c" .. i, "EX", 3600) end
return "ok"' 0 >/dev/null
rcli -n 3 EVAL 'for i = 1, 100 do redis.call("SET", "db3:" .. i, i) end return 1' 0 >/dev/null
redis_fingerprint() {
  local db
  printf 'digest %s\n' "$(rcli DEBUG DIGEST)"
  for db in 0 3; do printf 'db%s %s\n' "$db" "$(rcli -n "$db" DBSIZE)"; done
  printf 'cache-ttl %s\n' "$( [ "$(rcli TTL cache:1)" -gt 0 ] && echo yes || echo no)"
}
redis_fingerprint >"$T/redis.before"
check "redis test data created (2655 keys in db0)" grep -q '^db0 2655$' "$T/redis.before"

expect_rc 0 "redis-backup succeeds" "$T/out" redis-backup.sh
RDB=$(cd "$T/store" && ls redis-*.rdb)
RBASE=${RDB%.rdb}
check "RDB, sidecar and manifest uploaded" test -s "$T/store/$RDB" -a -s "$T/store/$RDB.sha256" -a -s "$T/store/$RBASE.manifest"
check "manifest counts all keys of all databases (2755)" grep -qP '^keys\t2755$' "$T/store/$RBASE.manifest"
check "manifest counts keys with a TTL (50)" grep -qP '^volatile\t50$' "$T/store/$RBASE.manifest"
check "manifest has per-database counts" grep -qP '^db\t3\t100$' "$T/store/$RBASE.manifest"
check "sidecar passes sha256sum -c" bash -c "cd '$T/store' && sha256sum -c --quiet '$RDB.sha256'"

rcli DEL session:1 session:2 customer:7 big-set >/dev/null
rcli SET session:3 tampered >/dev/null
rcli HSET big-hash f1 changed >/dev/null
rcli ZADD leaderboard 99999 intruder >/dev/null
rcli SET new-key-after-backup x >/dev/null
rcli PERSIST cache:1 >/dev/null
rcli -n 3 FLUSHDB >/dev/null
redis_fingerprint >"$T/redis.damaged"
check "damage changed the Redis fingerprint" bash -c "! cmp -s '$T/redis.before' '$T/redis.damaged'"

expect_rc 0 "redis-restore restores the latest backup into the running server" "$T/out" redis-restore.sh
expect_log "redis-restore verified the target" "$T/out" 'complete and verified: 2755 keys'
redis_fingerprint >"$T/redis.after"
if cmp -s "$T/redis.before" "$T/redis.after"; then pass "restored Redis equals the pre-damage data (DEBUG DIGEST, DBSIZE per db, TTL kept)"; else
  fail "restored Redis differs"; diff "$T/redis.before" "$T/redis.after" | sed 's/^/    | /'
fi
check "binary key and value restored byte for byte" test "$(rcli EVAL 'return redis.sha1hex(redis.call("GET", "bin\0key\nwith newline"))' 0)" = "$(printf '\0\1\2\377 binary value' | sha1sum | cut -d' ' -f1)"

# The digest notices one changed hash field: backup B's RDB with backup A's manifest.
expect_rc 0 "redis-backup A" "$T/out" redis-backup.sh BACKUP_DEST="$T/rswapA"
rcli HSET customer:42 balance 1.0 >/dev/null
expect_rc 0 "redis-backup B (one hash field changed)" "$T/out" redis-backup.sh BACKUP_DEST="$T/rswapB"
ra=$(cd "$T/rswapA" && ls *.manifest); ra=${ra%.manifest}
rb=$(cd "$T/rswapB" && ls *.manifest); rb=${rb%.manifest}
cp "$T/rswapB/$rb.rdb" "$T/rswapA/$ra.rdb"
reseal "$T/rswapA" "$ra" rdb
redis_fingerprint >"$T/redis.pre-swap"
expect_rc 3 "redis-restore: an RDB differing in one hash field from its manifest fails" "$T/out" redis-restore.sh BACKUP_DEST="$T/rswapA"
expect_log "... naming the digest" "$T/out" "ERROR .*loads with digest"
redis_fingerprint >"$T/redis.post-swap"
check "... before touching the target" cmp -s "$T/redis.pre-swap" "$T/redis.post-swap"

rcli SET marker before-failed-restore >/dev/null
redis_fingerprint >"$T/redis.pre-bad"
cp -r "$T/store" "$T/rbad1"; flip_byte "$T/rbad1/$RDB"
expect_rc 3 "redis-restore refuses an RDB with a flipped byte" "$T/out" redis-restore.sh BACKUP_DEST="$T/rbad1"
expect_log "... naming the sha256 mismatch" "$T/out" "sha256 mismatch for $RDB"
cp -r "$T/store" "$T/rbad2"; flip_byte "$T/rbad2/$RDB"; reseal "$T/rbad2" "$RBASE" rdb
expect_rc 3 "redis-restore refuses a corrupt RDB whose checksums were recomputed" "$T/out" redis-restore.sh BACKUP_DEST="$T/rbad2"
cp -r "$T/store" "$T/rbad3"; sed -i 's/^digest\t.*/digest\t0000/' "$T/rbad3/$RBASE.manifest"
expect_rc 3 "redis-restore refuses an RDB that disagrees with its manifest" "$T/out" redis-restore.sh BACKUP_DEST="$T/rbad3"
expect_log "... naming what differs" "$T/out" "digest"
redis_fingerprint >"$T/redis.post-bad"
check "failed restores left the target untouched" cmp -s "$T/redis.pre-bad" "$T/redis.post-bad"
expect_rc 4 "redis-restore: no backup at BACKUP_DEST" "$T/out" redis-restore.sh BACKUP_DEST="$T/empty"
expect_rc 1 "redis-backup: wrong password fails" "$T/out" redis-backup.sh REDIS_PASSWORD=nope
expect_rc 2 "redis-backup: REDIS_HOST unset" "$T/out" redis-backup.sh REDIS_HOST=

rold=redis-$(date -u -d '10 days ago' +%Y%m%dT%H%M%SZ)
for ext in rdb rdb.sha256 manifest; do echo fake >"$T/store/$rold.$ext"; done
pgold=pg-shop-$(date -u -d '10 days ago' +%Y%m%dT%H%M%SZ)
echo fake >"$T/store/$pgold.dump"
expect_rc 0 "redis-backup with BACKUP_RETENTION_DAYS=7" "$T/out" redis-backup.sh BACKUP_RETENTION_DAYS=7
check "old Redis backup pruned" test -z "$(ls "$T/store" | grep -F "$rold")"
check "an old pg backup is not pruned by the Redis backup" test -f "$T/store/$pgold.dump"
expect_rc 0 "redis-backup to s3://" "$T/out" redis-backup.sh PATH="$S3PATH" BACKUP_DEST=s3://bucket/shop/redis
rcli FLUSHALL >/dev/null
expect_rc 0 "redis-restore from s3://" "$T/out" redis-restore.sh PATH="$S3PATH" BACKUP_DEST=s3://bucket/shop/redis
check "restore from s3 brought back the data incl. the marker key" test "$(rcli GET marker)" = before-failed-restore

fi

# ---- as the Jobs run them: an unknown uid (65532, no passwd entry, no home) ----------------
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1; then
  say "--- as uid 65532"
  mkdir -p "$T/uid-tmp" "$T/uid-store"
  chmod 1777 "$T/uid-tmp" "$T/uid-store"
  SCRIPT_RUNNER=(setpriv --reuid=65532 --regid=65532 --clear-groups)
  uid_env=(HOME=/nonexistent TMPDIR="$T/uid-tmp" BACKUP_DEST="$T/uid-store")
  if [ "$ONLY" != redis ]; then
    expect_rc 0 "pg-backup as uid 65532" "$T/out" pg-backup.sh "${uid_env[@]}"
    expect_rc 0 "pg-verify as uid 65532" "$T/out" pg-verify.sh "${uid_env[@]}"
  fi
  if [ "$ONLY" != pg ]; then
    expect_rc 0 "redis-backup as uid 65532" "$T/out" redis-backup.sh "${uid_env[@]}"
    expect_rc 0 "redis-restore as uid 65532" "$T/out" redis-restore.sh "${uid_env[@]}"
  fi
  check "uid 65532 runs left no work directories" test -z "$(ls "$T/uid-tmp")"
  SCRIPT_RUNNER=()
fi

# ---- leftovers ----------------------------------------------------------------------------------
check "no scratch work directories left behind" test -z "$(ls "$T" | grep '^meshward-backup\.')"
check "no scratch redis-server left running" test -z "$(pgrep -f "$T/meshward-backup" || true)"

say "$PASSED passed, $FAILED failed"
printf '%s passed, %s failed\n' "$PASSED" "$FAILED"
[ "$FAILED" = 0 ]
