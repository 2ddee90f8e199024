#!/usr/bin/env bash
# Debian's Chromium for the real-browser admin tests (Playwright drives it; no browser download).
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != "0" ]; then
  echo "chromium is not installed and this is not root: browser tests will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null \
  || echo "could not install chromium: browser tests will be skipped" >&2
