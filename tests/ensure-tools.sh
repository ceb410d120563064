#!/usr/bin/env bash
# Installs what the tests need beyond Python packages, when it is missing:
# Debian's Chromium for the browser tests (Playwright drives it; it cannot
# download a browser of its own here), the npm packages of the email checks
# and a PostgreSQL server.
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's chromium for the browser tests..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing and cannot be installed here (needs root and apt-get): browser tests will be skipped" >&2
  fi
fi

# The checkers the email tests run (axe-core and html-validate, npm
# packages pinned in tests/js/package-lock.json), installed once with
# `npm ci` from the npm registry; the tests themselves never download.
js_dir="$(cd "$(dirname "$0")" && pwd)/js"
if [ ! -d "$js_dir/node_modules" ]; then
  if ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "Installing Debian's nodejs and npm for the email checks..."
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    fi
  fi
  if command -v npm >/dev/null; then
    echo "Installing the email checkers (npm ci in tests/js)..."
    (cd "$js_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || {
      rm -rf "$js_dir/node_modules"
      echo "npm ci failed in tests/js: email checks will be skipped" >&2
    }
  else
    echo "npm is missing and cannot be installed here (needs root and apt-get): email checks will be skipped" >&2
  fi
fi

# A local PostgreSQL server for the store tests, with the role and database
# that tests/conftest.py expects (TEST_POSTGRES_URL overrides them).
if [ -z "${TEST_POSTGRES_URL:-}" ]; then
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "Installing Debian's postgresql for the store tests..."
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
      echo "postgresql is missing and cannot be installed here (needs root and apt-get): PostgreSQL tests will be skipped" >&2
    fi
  fi
  if [ "$(id -u)" = 0 ] && command -v pg_lsclusters >/dev/null; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    pg_lsclusters -h | grep -q "^$version main" || pg_createcluster "$version" main >/dev/null
    pg_lsclusters -h | grep -q "^$version main .* online" || pg_ctlcluster "$version" main start
    as_postgres() { su postgres -c "$1"; }
    as_postgres "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='newsletter_test'\"" | grep -q 1 ||
      as_postgres "psql -qc \"CREATE ROLE newsletter_test LOGIN PASSWORD 'newsletter_test'\""
    # Each test worker (pytest -n) makes a database of its own.
    as_postgres "psql -qc \"ALTER ROLE newsletter_test CREATEDB\""
    as_postgres "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='newsletter_test'\"" | grep -q 1 ||
      as_postgres "createdb -O newsletter_test newsletter_test"
  fi
fi
