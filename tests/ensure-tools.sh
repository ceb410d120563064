#!/usr/bin/env bash
# Installs what the tests need beyond Python packages, when it is missing:
# Debian's Chromium for the browser tests (Playwright drives it; it cannot
# download a browser of its own here).
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
    as_postgres "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='newsletter_test'\"" | grep -q 1 ||
      as_postgres "createdb -O newsletter_test newsletter_test"
  fi
fi
