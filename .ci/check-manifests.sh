#!/usr/bin/env bash
# Rendered manifests: fresh, valid by the official schemas, rules and alert routing proven.
#  1. renders every deploy/*/policy.yaml and fails when deploy/*/rendered/ is stale;
#  2. renders the test policies (wasm-manifests/tests/policies/*.yaml);
#  3. validates every rendered document with ../shared/tools/k8s-validate (--cel, 0 errors),
#     and checks the validator does reject a broken WasmPlugin (so a pass means something);
#  4. `promtool check rules` on every PrometheusRule's .spec, `promtool test rules` with the
#     unit tests in deploy/*/tests/rules_test.yaml;
#  5. `amtool check-config` on every rendered alertmanager.yaml and `amtool config routes test`
#     for each severity against the expected receivers (deploy/*/tests/routes.txt,
#     wasm-manifests/tests/policies/*.routes).
# Tools missing on a developer machine: skip with a message; under CI=true or
# MESHWARD_REQUIRE_TOOLS=1 a missing tool fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED=${MESHWARD_SHARED:-$ROOT/../shared}
REQUIRE=0
if [ "${CI:-}" = "true" ] || [ "${MESHWARD_REQUIRE_TOOLS:-}" = "1" ]; then REQUIRE=1; fi

say() { printf '  %s\n' "$*"; }
missing() {
  if [ "$REQUIRE" = 1 ]; then echo "check-manifests: required tool missing: $*" >&2; exit 1; fi
  echo "check-manifests: SKIP (tool missing: $*)"
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- python deps of the validator (a venv when pip refuses the system interpreter)
PY=python3
if ! $PY -c 'import jsonschema, yaml, celpy' 2>/dev/null; then
  if [ -x "$ROOT/target/check-manifests-venv/bin/python" ] \
     && "$ROOT/target/check-manifests-venv/bin/python" -c 'import jsonschema, yaml, celpy' 2>/dev/null; then
    PY=$ROOT/target/check-manifests-venv/bin/python
  else
    $PY -m pip install -q jsonschema pyyaml cel-python 2>/dev/null || {
      $PY -m venv "$ROOT/target/check-manifests-venv"
      PY=$ROOT/target/check-manifests-venv/bin/python
      $PY -m pip install -q jsonschema pyyaml cel-python
    }
  fi
fi

# --- the CLI
cargo build -q --bin meshward
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/meshward

# --- 1 + 2: render
declare -a DIRS=()
for policy in deploy/*/policy.yaml; do
  [ -e "$policy" ] || continue
  name=$(basename "$(dirname "$policy")")
  out=$WORK/deploy-$name
  "$BIN" render "$policy" --out "$out" >/dev/null
  if ! diff -r "$out" "$(dirname "$policy")/rendered" >"$WORK/diff" 2>&1; then
    head -40 "$WORK/diff" >&2
    echo "check-manifests: $(dirname "$policy")/rendered is stale: run" >&2
    echo "  meshward render $policy --out $(dirname "$policy")/rendered" >&2
    exit 1
  fi
  say "fresh: $(dirname "$policy")/rendered"
  DIRS+=("$out|$(dirname "$policy")/tests")
done
for policy in wasm-manifests/tests/policies/*.yaml; do
  name=$(basename "$policy" .yaml)
  out=$WORK/test-$name
  "$BIN" render "$policy" --out "$out" >/dev/null
  DIRS+=("$out|${policy%.yaml}")
done

# --- 3: schemas
VALIDATE=$SHARED/tools/k8s-validate/k8s_validate.py
[ -f "$VALIDATE" ] || { echo "check-manifests: $VALIDATE not found (set MESHWARD_SHARED)" >&2; exit 1; }
files=()
for entry in "${DIRS[@]}"; do
  dir=${entry%%|*}
  for f in "$dir"/*.yaml; do
    [ "$(basename "$f")" = kustomization.yaml ] && continue
    files+=("$f")
  done
  # every file is listed in the kustomization, and nothing else
  $PY - "$dir" <<'PYEOF'
import os, sys, yaml
d = sys.argv[1]
k = yaml.safe_load(open(os.path.join(d, "kustomization.yaml")))
want = sorted(f for f in os.listdir(d) if f.endswith(".yaml") and f != "kustomization.yaml")
if sorted(k["resources"]) != want:
    sys.exit(f"{d}/kustomization.yaml lists {k['resources']}, directory has {want}")
PYEOF
done
$PY "$VALIDATE" --cel "${files[@]}" >"$WORK/validate.out" 2>&1 || { grep -v '^OK' "$WORK/validate.out" >&2; exit 1; }
say "schemas: $(grep -c '^OK' "$WORK/validate.out") documents valid ($(tail -1 "$WORK/validate.out"))"
# The validator must reject a broken WasmPlugin, or the pass above proves nothing.
first=${DIRS[0]%%|*}
sed 's/failStrategy: FAIL_OPEN/failStrategy: FAIL_SOMETIMES/' "$first/filters.yaml" >"$WORK/broken.yaml"
if $PY "$VALIDATE" --cel "$WORK/broken.yaml" >/dev/null 2>&1; then
  echo "check-manifests: the validator accepted a broken WasmPlugin" >&2; exit 1
fi
say "schemas: a broken WasmPlugin is rejected"

# --- 4 + 5: promtool / amtool
have_prom=1; command -v promtool >/dev/null || { missing promtool; have_prom=0; }
have_am=1; command -v amtool >/dev/null || { missing amtool; have_am=0; }
for entry in "${DIRS[@]}"; do
  dir=${entry%%|*}
  extra=${entry#*|}
  n=$(basename "$dir")
  mkdir -p "$WORK/$n-checks"
  $PY - "$dir" "$WORK/$n-checks" <<'PYEOF'
import os, sys, yaml
src, dst = sys.argv[1], sys.argv[2]
for doc in yaml.safe_load_all(open(os.path.join(src, "monitoring.yaml"))):
    if doc and doc.get("kind") == "PrometheusRule":
        with open(os.path.join(dst, "rules.yml"), "w") as f:
            yaml.safe_dump(doc["spec"], f, sort_keys=False)
p = os.path.join(src, "alerting.yaml")
if os.path.exists(p):
    for doc in yaml.safe_load_all(open(p)):
        if doc and doc.get("kind") == "Secret":
            with open(os.path.join(dst, "alertmanager.yml"), "w") as f:
                f.write(doc["stringData"]["alertmanager.yaml"])
PYEOF
  if [ "$have_prom" = 1 ]; then
    promtool check rules "$WORK/$n-checks/rules.yml" >/dev/null
    say "promtool check rules: $n"
    if [ -f "$extra/rules_test.yaml" ]; then
      cp "$extra/rules_test.yaml" "$WORK/$n-checks/rules_test.yaml"
      (cd "$WORK/$n-checks" && promtool test rules rules_test.yaml)
      say "promtool test rules: $n"
    fi
  fi
  if [ "$have_am" = 1 ] && [ -f "$WORK/$n-checks/alertmanager.yml" ]; then
    amtool check-config "$WORK/$n-checks/alertmanager.yml" >/dev/null
    say "amtool check-config: $n"
    routes=""
    if [ -f "$extra/routes.txt" ]; then routes="$extra/routes.txt"; elif [ -f "$extra.routes" ]; then routes="$extra.routes"; fi
    [ -n "$routes" ] || { echo "check-manifests: $n renders alerting.yaml but has no expected routes file" >&2; exit 1; }
    while read -r sev recv; do
      case "$sev" in ''|'#'*) continue ;; esac
      amtool config routes test --config.file="$WORK/$n-checks/alertmanager.yml" \
        --verify.receivers="$recv" "severity=$sev" >/dev/null 2>&1 || {
        echo "check-manifests: $n: severity=$sev does not reach $recv:" >&2
        amtool config routes test --config.file="$WORK/$n-checks/alertmanager.yml" "severity=$sev" >&2 || true
        exit 1
      }
      say "amtool routes: $n severity=$sev -> $recv"
    done <"$routes"
  fi
done
echo "check-manifests: OK"
