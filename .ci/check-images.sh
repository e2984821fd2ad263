#!/usr/bin/env bash
# End-to-end check of the filter images through the CLI, against a real registry:
#   meshward package -> meshward push (twice) to Debian's docker-registry on 127.0.0.1
#   -> skopeo pulls each image back (manifest digest and plugin.wasm unchanged)
#   -> ../shared/tools/istio-wasm-image-check accepts each image
#   -> a second `package` run gives the same digests (reproducible)
#   -> meshward render --digests pins the WasmPlugin to the pushed digest, and that url resolves.
# Needs: docker-registry, skopeo, wasm-opt (binaryen), python3 (.ci/packages.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CHECK="$ROOT/../shared/tools/istio-wasm-image-check/check_wasm_image.py"

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    if [ "${MESHWARD_REQUIRE_TOOLS:-}" = 1 ]; then echo "FAIL: $1 is required (see .ci/packages.txt)"; exit 1; fi
    echo "SKIP: $1 is not installed"; exit 0
  fi
}
for t in docker-registry skopeo wasm-opt python3; do need "$t"; done
[ -f "$CHECK" ] || { echo "FAIL: Istio image check not found at $CHECK"; exit 1; }

WORK=$(mktemp -d)
REG_PID=
cleanup() {
  if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; wait "$REG_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# MESHWARD_BIN: use an already built binary (a developer's debug build); CI builds release.
if [ -n "${MESHWARD_BIN:-}" ]; then
  MW=$MESHWARD_BIN
else
  cargo build --release --quiet --bin meshward
  MW="${CARGO_TARGET_DIR:-$ROOT/target}/release/meshward"
fi

# --- a registry on a free loopback port, storage in the temp dir
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $WORK/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
EOF
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break
  kill -0 "$REG_PID" 2>/dev/null || { cat "$WORK/registry.log"; echo "FAIL: registry exited"; exit 1; }
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/v2/" >/dev/null || { echo "FAIL: registry did not start"; exit 1; }
REG="127.0.0.1:$PORT/meshward"
echo "registry at $REG (pid $REG_PID)"

# --- package, push twice
"$MW" package --out "$WORK/images" | tee "$WORK/package.txt"
"$MW" push --registry "$REG" --from "$WORK/images" --plain-http --digests-out "$WORK/digests.json" | tee "$WORK/push1.txt"
"$MW" push --registry "$REG" --from "$WORK/images" --plain-http | tee "$WORK/push2.txt"
cmp "$WORK/push1.txt" "$WORK/push2.txt" || { echo "FAIL: pushing twice gave different digests"; exit 1; }

# --- reproducible: a fresh package run gives the same digests
"$MW" package --out "$WORK/images-again" >"$WORK/package2.txt"
diff <(sed "s#$WORK/images-again#X#" "$WORK/package2.txt") <(sed "s#$WORK/images#X#" "$WORK/package.txt") \
  || { echo "FAIL: packaging the same modules twice gave different images"; exit 1; }

failures=0
mkdir -p "$WORK/pulled"
export REGISTRY_AUTH_FILE="$WORK/auth.json"; echo '{}' >"$REGISTRY_AUTH_FILE"
while read -r pinned; do
  name=$(basename "${pinned%@*}")
  digest=${pinned#*@}
  tag=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])' "$WORK/images/$name/index.json")
  [ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/digests.json" "$name")" = "$digest" ] \
    || { echo "FAIL: $name: digests file does not hold $digest"; failures=$((failures+1)); }
  # the manifest skopeo sees hashes to the printed digest
  got=$(skopeo inspect --tls-verify=false --raw "docker://$REG/$name:$tag" | sha256sum | cut -d' ' -f1)
  [ "sha256:$got" = "$digest" ] || { echo "FAIL: $name: registry manifest sha256:$got != $digest"; failures=$((failures+1)); }
  # pull it back as a layout; its index points at the same digest; plugin.wasm is identical
  skopeo copy -q --src-tls-verify=false "docker://$REG/$name:$tag" "oci:$WORK/pulled/$name:$tag"
  pulled=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$WORK/pulled/$name/index.json")
  [ "$pulled" = "$digest" ] || { echo "FAIL: $name: pulled manifest $pulled != $digest"; failures=$((failures+1)); }
  layer() { python3 -c 'import json,sys; d=sys.argv[1]; m=json.load(open(d+"/blobs/sha256/"+sys.argv[2][7:])); print(d+"/blobs/sha256/"+m["layers"][-1]["digest"][7:])' "$1" "$digest"; }
  tar -xzOf "$(layer "$WORK/images/$name")" plugin.wasm >"$WORK/$name.local.wasm"
  tar -xzOf "$(layer "$WORK/pulled/$name")" plugin.wasm >"$WORK/$name.pulled.wasm"
  cmp "$WORK/$name.local.wasm" "$WORK/$name.pulled.wasm" || { echo "FAIL: $name: plugin.wasm differs after the round trip"; failures=$((failures+1)); }
  # Istio's acceptance rules
  python3 "$CHECK" "http://127.0.0.1:$PORT" "meshward/$name" "$tag" "$(sha256sum "$WORK/$name.local.wasm" | cut -d' ' -f1)" \
    || { echo "FAIL: $name: Istio would reject the image"; failures=$((failures+1)); }
  echo "ok: $name $digest ($(stat -c %s "$WORK/$name.local.wasm") bytes plugin.wasm)"
done <"$WORK/push1.txt"
[ -s "$WORK/push1.txt" ] || { echo "FAIL: nothing was pushed"; exit 1; }

# --- the renderer pins the WasmPlugin to the pushed digest, and that url resolves on the registry
sed -E "s#^(    registry: ).*#\\1$REG#" deploy/orders-api/policy.yaml >"$WORK/policy.yaml"
"$MW" render "$WORK/policy.yaml" --out "$WORK/rendered" --digests "$WORK/digests.json" >/dev/null
pinned_ok=0
while read -r pinned; do
  name=$(basename "${pinned%@*}")
  digest=${pinned#*@}
  if ! grep -rqsE "url: \"?oci://$REG/$name@$digest\"?$" "$WORK/rendered"; then
    if ! grep -rqs "oci://.*/$name@" "$WORK/rendered"; then echo "note: the policy does not use $name"; continue; fi
    echo "FAIL: no rendered WasmPlugin carries oci://$REG/$name@$digest"; grep -rn "url:" "$WORK/rendered" || true
    failures=$((failures+1)); continue
  fi
  got=$(skopeo inspect --tls-verify=false --raw "docker://$REG/$name@$digest" | sha256sum | cut -d' ' -f1)
  [ "sha256:$got" = "$digest" ] || { echo "FAIL: rendered url for $name does not resolve to $digest"; failures=$((failures+1)); }
  pinned_ok=$((pinned_ok+1))
  echo "ok: rendered WasmPlugin for $name is pinned to $digest and resolves"
done <"$WORK/push1.txt"
[ "$pinned_ok" -gt 0 ] || { echo "FAIL: no rendered WasmPlugin was checked"; failures=$((failures+1)); }

if [ "$failures" -ne 0 ]; then echo "check-images: $failures failure(s)"; exit 1; fi
echo "check-images: all images pushed, pulled back identical, accepted by Istio's rules, pinned by render"
