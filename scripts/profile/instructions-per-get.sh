#!/usr/bin/env bash
# Counts the instructions the service spends on one proxied `GET /Users/{id}` (xsuaa connector in front of
# the UAA simulator), by crate and, inside the connector, by guest function: `provisio serve` (release)
# under valgrind's callgrind with instrumentation off until the measured requests start, the simulator and
# the client native. Instruction counts repeat from run to run where wall-clock latencies on a shared
# 2-core machine swing by a third, so a change of a few per cent shows (docs/performance.md, "nineteenth
# session").
#
#   scripts/profile/instructions-per-get.sh [REQUESTS] [BIN_DIR]
#
# PROFILE_WHAT=page counts 100-user pages (`GET /Users?startIndex=…&count=100`) instead of GETs by id.
# REQUESTS (default 300) sequential GETs on one kept-alive connection, after 300 unmeasured ones; BIN_DIR
# holds `provisio` and `provisio-sim` (default: `cargo build --release` of them, into target/release).
# Prints the per-request table, and leaves the callgrind file and the connector's symbol map (perf map) in
# $OUT (default /tmp/provisio-callgrind) for `callgrind_annotate`. Counts exclude the kernel; the service's
# background work during the window (store polling, timers) is listed apart ("sqlite (background)").
set -euo pipefail
cd "$(dirname "$0")/../.."
REQUESTS=${1:-300}
BIN=${2:-}
OUT=${OUT:-/tmp/provisio-callgrind}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
if [ -z "$BIN" ]; then
  rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
  cargo build --release -p provisio -p provisio-tests --bin provisio --bin provisio-sim
  BIN=target/release
fi
mkdir -p "$OUT"
DATA=$(mktemp -d)
PORT=${PORT:-18080}
SIM_PORT=${SIM_PORT:-18092}
export PROVISIO_BOOTSTRAP_ADMIN=admin:bench-password-1
# The connectors' functions by name: the engine writes /tmp/perf-<pid>.map as it loads them.
export PROVISIO_WASM_PROFILER=perfmap
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$DATA"' EXIT
"$BIN/provisio-sim" uaa --listen 127.0.0.1:$SIM_PORT --users 200 >"$DATA/sim.txt" &
pids+=($!)
rm -f "$OUT"/callgrind.out.*
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.out.%p" \
  "$BIN/provisio" serve --listen 127.0.0.1:$PORT --data-dir "$DATA" >"$DATA/service.log" 2>&1 &
SERVICE=$!
pids+=($SERVICE)
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.5
done
python3 scripts/profile/drive.py "$PORT" "$DATA/sim.txt" "$REQUESTS" "$SERVICE"
kill "$SERVICE"
wait "$SERVICE" 2>/dev/null || true
cp "/tmp/perf-$SERVICE.map" "$OUT/" 2>/dev/null || true
python3 scripts/profile/per_request.py "$OUT/callgrind.out.$SERVICE.1" "$REQUESTS" "$OUT/perf-$SERVICE.map"
