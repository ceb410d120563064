#!/usr/bin/env bash
# Installs what the tests need beyond Python packages, when it is missing:
# Debian's Chromium for the browser tests (Playwright drives it; it cannot
# download a browser of its own here), the npm packages of the tests (the
# email checks, the SES emulator) and a PostgreSQL server.
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

# The npm packages the tests run (axe-core and html-validate for the email
# checks, aws-ses-v2-local as a second SES emulator), pinned in
# tests/js/package-lock.json and installed with `npm ci` from the npm
# registry; the tests themselves never download. Installed again when the
# lock file changed since the last install (npm writes
# node_modules/.package-lock.json each time) or a package of package.json
# is missing, so a machine installed before a package was added gets it. The new install is
# made beside the old one and replaces it only once complete: offline, the
# packages already there stay usable.
js_dir="$(cd "$(dirname "$0")" && pwd)/js"
js_install_needed() {
  [ -d "$js_dir/node_modules" ] || return 0
  [ "$js_dir/package-lock.json" -nt "$js_dir/node_modules/.package-lock.json" ] && return 0
  local package
  for package in $(python3 -c 'import json, sys; print(*json.load(open(sys.argv[1]))["dependencies"])' \
                     "$js_dir/package.json"); do
    [ -f "$js_dir/node_modules/$package/package.json" ] || return 0
  done
  return 1
}
if js_install_needed; then
  if ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "Installing Debian's nodejs and npm for the email checks and the SES emulator..."
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    fi
  fi
  if command -v npm >/dev/null; then
    echo "Installing the npm packages of the tests (npm ci in tests/js)..."
    staging="$(mktemp -d "$js_dir/.install.XXXXXX")"
    trap 'rm -rf "$staging"' EXIT
    cp "$js_dir/package.json" "$js_dir/package-lock.json" "$staging/"
    if (cd "$staging" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
      rm -rf "$js_dir/node_modules"
      mv "$staging/node_modules" "$js_dir/node_modules"
    else
      echo "npm ci failed in tests/js: the tests needing a missing package will be skipped" >&2
    fi
  else
    echo "npm is missing and cannot be installed here (needs root and apt-get): email checks and SES emulator tests will be skipped" >&2
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
