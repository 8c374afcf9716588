#!/usr/bin/env bash
# `npm test`: every test. Lint, format and types; unit and integration tests (Vitest, real PostgreSQL), then the browser
# tests (Playwright in Debian's Chromium) against a fresh production build of the app.
set -euo pipefail
cd "$(dirname "$0")/.."
export NEXT_TELEMETRY_DISABLED=1 CHECKPOINT_DISABLE=1 PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

started=$SECONDS
echo "== browser for the Playwright tests (${CHROMIUM_PATH:-/usr/bin/chromium})"
bash scripts/ensure-chromium.sh

echo "== lint, format and types (biome, tsc)"
node_modules/.bin/biome check .
node_modules/.bin/tsc --noEmit

echo "== unit and integration tests (vitest)"
node_modules/.bin/vitest run

echo "== production build (next build)"
node_modules/.bin/next build

echo "== browser tests (playwright, ${CHROMIUM_PATH:-/usr/bin/chromium})"
node_modules/.bin/playwright test

echo "== all tests passed in $((SECONDS - started)) s"
