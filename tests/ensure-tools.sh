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
