#!/usr/bin/env bash
# A profile-guided build of the service (opt-in; `cargo build --release` stays the plain build). LLVM lays
# out and inlines the code by what a training run measured: a request crosses a dozen crates, none of them
# above a fifth of its instructions, so where the time goes is the code's footprint more than any one
# function (docs/performance.md, "twenty-fourth session").
#
#   scripts/build-pgo.sh
#
# 1. builds `provisio` and `provisio-sim` instrumented (`-Cprofile-generate`, target/pgo-generate);
# 2. trains: runs the instrumented service against UAA simulators through scripts/pgo/train.py (proxied GETs
#    one at a time and from 32 clients, 100-user pages, a Read job first and unchanged), and stops it with
#    SIGTERM, when it writes its profile;
# 3. merges the profile (llvm-profdata, from rustup's llvm-tools) into target/pgo-data/provisio.profdata;
# 4. builds `provisio` and `provisio-sim` with it (`-Cprofile-use`, target/pgo): the binaries are
#    target/pgo/<host triple>/release/{provisio,provisio-sim}.
#
# PGO_BENCHES="proxy provisioning" also builds those benchmarks, instrumented and then with the profile (the
# script prints where; run them from tests/ with --bench). They are trained by the service's run, not by their
# own. PGO_USERS (default 20000) sets the Read's size, PGO_GETS and PGO_PAGES the proxy's requests.
# Both builds take the release profile (fat LTO): 16-18 minutes each on 2 cores, cold (2026-12-08).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null
rustup component add llvm-tools >/dev/null
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
PROFDATA="$(rustc --print sysroot)/lib/rustlib/$TRIPLE/bin/llvm-profdata"
DATA_DIR=$PWD/target/pgo-data
# The benchmarks are built in the same cargo invocation as the binaries, in both stages: one invocation
# compiles each crate once, with one feature set, so the functions the service's training run counted are
# the very ones the benchmarks link (a separate `cargo bench` would compile the service's crates again with
# its dev-dependencies' features, under other symbol names, and the profile would not reach them).
# With --target, RUSTFLAGS reach only the target's crates: build scripts and proc macros are not instrumented
# (host/wasm_build.rs clears RUSTFLAGS for the components, which are not instrumented either).
BENCHES=()
for bench in ${PGO_BENCHES:-}; do BENCHES+=(--bench "$bench"); done
build() {
  local target_dir=$1 flags=$2
  RUSTFLAGS="$flags" cargo build --release --target "$TRIPLE" --target-dir "$target_dir" \
    -p provisio -p provisio-tests --bin provisio --bin provisio-sim "${BENCHES[@]}"
}

echo "== 1. the instrumented build (target/pgo-generate)"
rm -rf "$DATA_DIR"
mkdir -p "$DATA_DIR/raw" "$DATA_DIR/discard"
build target/pgo-generate "-Cprofile-generate=$DATA_DIR/raw"
GEN=target/pgo-generate/$TRIPLE/release

echo "== 2. the training run"
WORK=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=${PGO_PORT:-18280}
export PROVISIO_BOOTSTRAP_ADMIN=admin:pgo-password-1
# The simulators are instrumented too (one build); what they count is thrown away.
sim() {
  LLVM_PROFILE_FILE="$DATA_DIR/discard/sim-%p.profraw" "$GEN/provisio-sim" uaa --listen "127.0.0.1:$1" \
    --users "$2" --seed "$3" >"$WORK/$4.txt" &
  pids+=($!)
}
sim $((PORT + 1)) 200 1 proxy
sim $((PORT + 2)) "${PGO_USERS:-20000}" 2 source
sim $((PORT + 3)) 0 3 target
LLVM_PROFILE_FILE="$DATA_DIR/raw/provisio-%p.profraw" "$GEN/provisio" serve --listen "127.0.0.1:$PORT" \
  --data-dir "$WORK" >"$WORK/service.log" 2>&1 &
SERVICE=$!
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
for name in proxy source target; do
  until grep -q OAuth2TokenServiceURL "$WORK/$name.txt" 2>/dev/null; do sleep 0.2; done
done
python3 scripts/pgo/train.py "$PORT" "$WORK/proxy.txt" "$WORK/source.txt" "$WORK/target.txt"
# The profile is written when the process exits: a graceful stop, not a kill.
kill -TERM "$SERVICE"
wait "$SERVICE" || { echo "the instrumented service did not exit cleanly; its log:" >&2; tail -20 "$WORK/service.log" >&2; exit 1; }

echo "== 3. the profile"
"$PROFDATA" merge -o "$DATA_DIR/provisio.profdata" "$DATA_DIR"/raw/provisio-*.profraw
rm -rf "$DATA_DIR/raw" "$DATA_DIR/discard"
ls -l "$DATA_DIR/provisio.profdata"

echo "== 4. the optimised build (target/pgo)"
build target/pgo "-Cprofile-use=$DATA_DIR/provisio.profdata"
OUT=target/pgo/$TRIPLE/release
echo "built: $OUT/provisio and $OUT/provisio-sim"
for bench in ${PGO_BENCHES:-}; do
  # The newest executable of that name; run it from tests/ with --bench, as `cargo bench` does.
  echo "  the $bench benchmark: $(ls -t "$OUT"/deps/"$bench"-* | grep -v '\.d$' | head -1)"
done
