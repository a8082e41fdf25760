#!/usr/bin/env bash
# scripts/ensure-chromium.sh - make sure Debian's Chromium is at /usr/bin/chromium, for the
# dashboard's browser tests (Tests/TxCoord.Tests.Dashboard drive it with Playwright for .NET;
# no browser is ever downloaded by the test tools).
#
#     scripts/ensure-chromium.sh        installs the 'chromium' package when missing (needs root)
#
# Exit code 0 when Chromium is there afterwards. When it cannot be installed, prints why and
# exits 1; the browser tests then fail with a message saying the same (they never skip).
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [[ -x "$CHROMIUM" ]]; then
    exit 0
fi

if (( EUID != 0 )); then
    echo "ensure-chromium: $CHROMIUM is missing and installing it needs root: run 'sudo apt-get install -y chromium'" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: $CHROMIUM is missing and there is no apt-get here: install Chromium so that $CHROMIUM exists" >&2
    exit 1
fi

echo "ensure-chromium: installing Debian's chromium package (for the dashboard's browser tests) ..."
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq chromium; } >/tmp/txcoord-chromium-install.log 2>&1; then
    echo "ensure-chromium: 'apt-get install chromium' failed; last lines of /tmp/txcoord-chromium-install.log:" >&2
    tail -n 20 /tmp/txcoord-chromium-install.log >&2 || true
    exit 1
fi

if [[ ! -x "$CHROMIUM" ]]; then
    echo "ensure-chromium: the chromium package installed but $CHROMIUM is not there" >&2
    exit 1
fi
echo "ensure-chromium: $("$CHROMIUM" --version 2>/dev/null || echo chromium) installed"
