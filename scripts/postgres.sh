#!/usr/bin/env bash
# Makes sure a PostgreSQL answers at $PROVISIO_TEST_DATABASE_URL (default: the local server's `test` database
# with trust authentication, as the project's machines have it). Where none answers, installs the
# distribution's server if it is missing and starts a private cluster (trust authentication, port 5432,
# databases `test` and `postgres`) under target/postgres. Prints the URL to use.
set -euo pipefail
cd "$(dirname "$0")/.."

url="${PROVISIO_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
answers() { command -v pg_isready >/dev/null && pg_isready -q -d "$url"; }

if ! answers; then
  if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "no PostgreSQL answers at $url; installing the distribution's server" >&2
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  fi
  bin="$(dirname "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | tail -1)")"
  data="$PWD/target/postgres"
  run=()
  # PostgreSQL refuses to run as root: the private cluster belongs to the postgres user then.
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    mkdir -p "$data" && chown -R postgres "$data"
    run=(su postgres -s /bin/sh -c)
  else
    mkdir -p "$data"
    run=(sh -c)
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    "${run[@]}" "'$bin/initdb' -D '$data' -U postgres --auth=trust -E UTF8 >/dev/null"
  fi
  echo "starting a private PostgreSQL in $data" >&2
  "${run[@]}" "'$bin/pg_ctl' -D '$data' -l '$data/log' -o '-p 5432 -k /tmp -c listen_addresses=127.0.0.1' -w start >/dev/null"
  "$bin/psql" -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
    || "$bin/createdb" -h 127.0.0.1 -U postgres test
  answers || { echo "PostgreSQL did not start; see $data/log" >&2; exit 1; }
fi
# The schemas earlier test runs left behind (each test works in a schema of its own).
psql="$(command -v psql || ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | tail -1 || true)"
if [ -n "$psql" ]; then
  "$psql" -q -d "$url" -tAc "SELECT format('DROP SCHEMA %I CASCADE;', nspname) FROM pg_namespace
                            WHERE nspname LIKE 'provisio\_test\_%' OR nspname LIKE 'provisio\_e2e\_%'" 2>/dev/null \
    | "$psql" -q -d "$url" >/dev/null 2>&1 || true
fi
echo "$url"
