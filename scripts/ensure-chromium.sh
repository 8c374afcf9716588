#!/usr/bin/env bash
# Makes sure the browser the Playwright tests drive is there before any test runs (so a missing
# browser is found in the first second, not after the other tests): Debian's Chromium, or the one
# CHROMIUM_PATH names. As root with apt it installs Debian's, as .ci/run does; otherwise it says the
# one command to run. apt waits for the package lock (another install in progress) instead of failing.
set -euo pipefail
debian_chromium=${SHARDSHIFT_DEBIAN_CHROMIUM:-/usr/bin/chromium} # overridden by its test only
chromium=${CHROMIUM_PATH:-$debian_chromium}

if [ -x "$chromium" ]; then exit 0; fi
if [ "$chromium" != "$debian_chromium" ]; then
  echo "CHROMIUM_PATH=$chromium is not an executable file: point it at a Chromium, or unset it to use Debian's ($debian_chromium)." >&2
  exit 1
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Chromium is missing: installing Debian's package (apt-get install chromium)…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium >/dev/null
  if [ -x "$chromium" ]; then exit 0; fi
  echo "apt-get installed chromium, but $chromium is still not there: set CHROMIUM_PATH to where it went." >&2
  exit 1
fi
echo "Chromium is missing. Install it with: sudo apt-get install -y chromium   (or set CHROMIUM_PATH to a Chromium)" >&2
exit 1
