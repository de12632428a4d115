#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine with the stock Rust toolchain: installs the
# wasm32-wasip2 target (the connector components are built from build scripts) and a Python venv with
# the third-party SCIM programs the end-to-end tests run against, then checks formatting and lints (clippy,
# warnings are errors), builds every member, runs the console's browser tests (installing chromium and Node
# when missing), runs Schemathesis against the admin API's OpenAPI document on a live service, and runs
# `cargo test --workspace` (unit tests, the transformation golden tests,
# simulators, and the end-to-end tests through the real wasm runtime). The PostgreSQL store's tests and the
# end-to-end tests on PostgreSQL need a server: `scripts/postgres.sh` finds one (PROVISIO_TEST_DATABASE_URL,
# else the local server's `test` database) or installs and starts one.
set -euo pipefail
cd "$(dirname "$0")/.."

# A clean run gains nothing from incremental caches, and they double the target directory on disk.
export CARGO_INCREMENTAL=0

rustup target add wasm32-wasip2
if [ ! -x .venv-scim/bin/python ]; then
  python3 -m venv .venv-scim
fi
.venv-scim/bin/pip install --quiet --disable-pip-version-check scim2-tester==0.5.2 scim2-cli==0.6.0 scim2-server==0.8.3

PROVISIO_TEST_DATABASE_URL="$(bash scripts/postgres.sh)"
export PROVISIO_TEST_DATABASE_URL

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Builds every member as `cargo build --release` does (the test plugins' native cdylibs must link too).
cargo build --workspace

# The web console's browser tests (tests/browser): headless Debian chromium driven by playwright-core, against
# the `provisio` and `provisio-sim` binaries just built. Installs chromium and Node when missing.
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
# Node and npm come from Debian only when the machine has none (Debian's npm conflicts with NodeSource's
# nodejs, which carries its own npm).
if [ ! -x /usr/bin/chromium ] || ! command -v npm >/dev/null; then
  $SUDO apt-get update -qq
fi
if [ ! -x /usr/bin/chromium ]; then
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
if ! command -v npm >/dev/null; then
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
(cd tests/browser && npm ci --no-audit --no-fund && npm test)
# Schemathesis against a live service over every operation of /api/v1/openapi.json (the debug build above).
bash scripts/schemathesis.sh
cargo test --workspace
