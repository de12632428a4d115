#!/usr/bin/env bash
# Runs Provisio on its embedded default (SQLite in a fresh data directory, the bundled connector
# components) next to a simulated SAP Identity Authentication tenant, and shows it at work: the loaded
# connectors, a system registered and its connection tested, a Read job provisioning the tenant's users
# into a simulated XSUAA (and an unchanged re-run writing nothing), the transformation engine on a user.
# The service keeps running afterwards; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null 2>&1 || { echo "rustup target add wasm32-wasip2 failed" >&2; exit 1; }
cargo build --release -p provisio -p provisio-tests --bin provisio --bin provisio-sim

BIN=target/release
DATA=$(mktemp -d -t provisio-demo.XXXXXX)
PORT=${PROVISIO_DEMO_PORT:-8080}
SIM_PORT=${PROVISIO_DEMO_SIM_PORT:-8091}
UAA_PORT=${PROVISIO_DEMO_UAA_PORT:-8092}
export PROVISIO_BOOTSTRAP_ADMIN=admin:demo-password-1
export PROVISIO_USER=admin:demo-password-1
export PROVISIO_URL=http://127.0.0.1:$PORT
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$DATA"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "A simulated Identity Authentication tenant with 250 users on 127.0.0.1:$SIM_PORT"
$BIN/provisio-sim ias --listen 127.0.0.1:$SIM_PORT --users 250 --groups 10 &
pids+=($!)

step "A simulated XSUAA (UAA) on 127.0.0.1:$UAA_PORT"
$BIN/provisio-sim uaa --listen 127.0.0.1:$UAA_PORT &
pids+=($!)

step "Provisio on 127.0.0.1:$PORT, data in $DATA"
$BIN/provisio serve --listen 127.0.0.1:$PORT --data-dir "$DATA" &
pids+=($!)
for _ in $(seq 1 100); do
  curl -sf "$PROVISIO_URL/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

step "Loaded connector plugins (wasm components)"
curl -sf -u "$PROVISIO_USER" "$PROVISIO_URL/api/v1/connectors" \
  | python3 -c '
import json, sys
for c in json.load(sys.stdin):
    print("  %s@%s  %7d bytes  sha256:%s…  %d properties" % (c["name"], c["version"], c["size"], c["digest"][:12], len(c["properties"])))'

step "Register the tenant as a source system (its secret is encrypted at rest and never shown again)"
created=$($BIN/provisio system add --name "Identity Authentication (simulated)" --type scim --role source \
  -p URL=http://127.0.0.1:$SIM_PORT/scim -p Authentication=BasicAuthentication -p User=T000001 -p Password=ias-secret)
echo "$created" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(" ", s["message"]); print("  id:", s["id"], " Password:", s["properties"]["Password"])'
id=$(echo "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

step "Test Connection"
$BIN/provisio system test "$id"

step "A wrong password is refused, and said so"
bad=$($BIN/provisio system add --name "Wrong password" --type scim --role source \
  -p URL=http://127.0.0.1:$SIM_PORT/scim -p Authentication=BasicAuthentication -p User=T000001 -p Password=nope \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
$BIN/provisio system test "$bad" || true

step "Register XSUAA as a target of that source"
curl -sf -u "$PROVISIO_USER" -H 'Content-Type: application/json' "$PROVISIO_URL/api/v1/systems" -d "{
  \"name\": \"XSUAA (simulated)\", \"type\": \"xsuaa\", \"role\": \"target\", \"sources\": [\"$id\"],
  \"properties\": {\"URL\": \"http://127.0.0.1:$UAA_PORT\", \"OAuth2TokenServiceURL\": \"http://127.0.0.1:$UAA_PORT/oauth/token\",
                   \"User\": \"sb-provisio!t1\", \"Password\": \"provisio-secret\", \"xsuaa.origin\": \"sap.custom\",
                   \"provisio.rate.limit\": \"200\"}}" \
  | python3 -c 'import json,sys; s=json.load(sys.stdin); print(" ", s["message"])'

step "A Read job: every user of the tenant provisioned into XSUAA (progress, then the statistics)"
$BIN/provisio job run "$id" --follow || true

step "The same Read again: nothing changed, so nothing is written"
$BIN/provisio job run "$id" --follow || true

step "The SAP transformation language: the XSUAA proxy write transformation (SAP's default) on a user"
$BIN/provisio transform test --transformation host/transform/tests/fixtures/xsuaa-proxy-write.json \
  --entity host/transform/tests/fixtures/scim-user.json --property xsuaa.origin=sap.custom --operation create

step "Provisio is running. Web console: $PROVISIO_URL/console — log in as admin / demo-password-1. Ctrl-C stops it."
wait
