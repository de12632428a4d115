#!/usr/bin/env bash
# Where a proxied request's time goes, against nginx doing the same hop: the user and kernel CPU each process
# spends per request (from /proc, per thread), and its context switches, CPU migrations and page faults
# (`perf stat` software events, which work where a VM has no hardware counters). Both proxies sit in front of
# the same UAA simulator and take the same requests one at a time on one kept-alive connection; the client
# reads each answer whole and parses nothing (docs/performance.md, "twenty-third session").
#
#   scripts/profile/cpu-per-request.sh [REQUESTS] [BIN_DIR]
#
# PROFILE_WHAT=page measures 100-user pages (`GET /Users?startIndex=…&count=100`) instead of GETs by id.
# PROFILE_CONNECTIONS=64 puts the load on 64 connections from wrk for PROFILE_SECONDS (default 5) instead (REQUESTS
# is then unused; needs wrk).
# REQUESTS (default 3000) after 300 unmeasured ones; BIN_DIR holds `provisio` and `provisio-sim` (default: a
# release build of them). Needs nginx (apt-get install nginx-light) and perf (linux-perf).
set -euo pipefail
cd "$(dirname "$0")/../.."
REQUESTS=${1:-3000}
BIN=${2:-}
for tool in nginx perf; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "$tool is needed" >&2; exit 1; }
done
if [ -z "$BIN" ]; then
  rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
  cargo build --release -p provisio -p provisio-tests --bin provisio --bin provisio-sim
  BIN=target/release
fi
DATA=$(mktemp -d)
PORT=${PORT:-18180}
SIM_PORT=${SIM_PORT:-18192}
NGINX_PORT=${NGINX_PORT:-18193}
export PROVISIO_BOOTSTRAP_ADMIN=admin:bench-password-1
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; sleep 0.3; rm -rf "$DATA"' EXIT
"$BIN/provisio-sim" uaa --listen 127.0.0.1:$SIM_PORT --users 200 >"$DATA/sim.txt" &
pids+=($!)
"$BIN/provisio" serve --listen 127.0.0.1:$PORT --data-dir "$DATA" >"$DATA/service.log" 2>&1 &
SERVICE=$!
pids+=($SERVICE)
# nginx as the proxy bench starts it (tests/benches/proxy.rs): a worker per core, kept-alive upstream.
mkdir -p "$DATA/nginx"
cat >"$DATA/nginx/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $DATA/nginx/nginx.pid;
error_log $DATA/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $DATA/nginx/body; proxy_temp_path $DATA/nginx/proxy; fastcgi_temp_path $DATA/nginx/fastcgi;
  uwsgi_temp_path $DATA/nginx/uwsgi; scgi_temp_path $DATA/nginx/scgi;
  upstream simulator { server 127.0.0.1:$SIM_PORT; keepalive 256; }
  server { listen 127.0.0.1:$NGINX_PORT; location / { proxy_pass http://simulator; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
"$NGINX" -p "$DATA/nginx" -c "$DATA/nginx/nginx.conf" 2>/dev/null &
NGINX_MASTER=$!
pids+=($NGINX_MASTER)
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && curl -s "http://127.0.0.1:$NGINX_PORT/" >/dev/null 2>&1 && break
  sleep 0.5
done
WORKERS=$(pgrep -d, -P "$NGINX_MASTER")
python3 scripts/profile/cpu_per_request.py "$PORT" "$DATA/sim.txt" "$REQUESTS" "$SERVICE" "$NGINX_PORT" "$WORKERS"
