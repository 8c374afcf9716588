#!/usr/bin/env bash
# The first hour on a fresh machine, checked: clones this repository into a new folder that only its
# owner can enter (mode 0700, as `mktemp -d` makes it — the case where, as root, the embedded
# PostgreSQL servers running as `postgres` cannot reach node_modules), then runs `npm install` and
# `npm test` there, and says how long each took.
#
# It tests a commit, not the work tree: uncommitted changes are not in the clone (it warns).
# The environment passes through unchanged, so ports and data folders (TEST_PG_PORT, E2E_PORT,
# E2E_PG_PORT_BASE, E2E_DATA_DIR, …) can keep it clear of other checkouts testing on the machine.
#
# Usage: bash scripts/fresh-clone-test.sh [--keep] [commit]   (default: HEAD)
#   --keep  leave the clone in place afterwards (a failed run always leaves it, for a look)
set -euo pipefail
keep=false
if [ "${1:-}" = --keep ]; then
  keep=true
  shift
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
commit=$(git -C "$repo" rev-parse --verify "${1:-HEAD}^{commit}")
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
  echo "Note: $repo has uncommitted changes; the clone tests commit ${commit:0:12} without them."
fi

parent=$(mktemp -d "${TMPDIR:-/tmp}/shardshift-fresh-clone-XXXXXX")
chmod 700 "$parent"
checkout="$parent/shardshift"
finish() {
  local code=$?
  if [ "$code" = 0 ] && [ "$keep" = false ]; then
    rm -rf "$parent"
  else
    echo "The clone is left in $checkout (delete it with: rm -rf $parent)"
  fi
}
trap finish EXIT

started=$SECONDS
echo "== clone ${commit:0:12} into $checkout (folder mode $(stat -c %a "$parent"))"
git clone --quiet --no-checkout --no-hardlinks "$repo" "$checkout"
git -C "$checkout" checkout --quiet --detach "$commit"
cd "$checkout"

echo "== npm install"
install_started=$SECONDS
# `npm ci` refuses this lockfile here (it lacks other platforms' optional packages): see README.
npm install --no-audit --no-fund
install_seconds=$((SECONDS - install_started))

echo "== npm test"
test_started=$SECONDS
npm test
test_seconds=$((SECONDS - test_started))

echo "== the fresh clone passed: npm install ${install_seconds} s, npm test ${test_seconds} s, $((SECONDS - started)) s in all"
