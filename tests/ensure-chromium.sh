#!/usr/bin/env bash
# tests/integration/test_page.py drives Debian's chromium headless and never skips:
# `make test` installs it when it is missing, so the README's test command alone
# passes on a fresh Debian machine (root, or sudo without a password).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
echo "== chromium is missing: installing Debian's package (the page test needs it)"
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends chromium
