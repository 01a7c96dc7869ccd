#!/usr/bin/env bash
# Validates the portal's catalog (catalog/, services/*/catalog-info.yaml) and the Software
# Templates (templates/service/*/template.yaml) with Backstage's own packages from npm, pinned
# by tests/catalog/package-lock.json and cached with the project's other downloads.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v npm >/dev/null 2>&1; then
  echo "validate-catalog: npm is missing; install Node.js 20 or newer with npm" >&2
  exit 3
fi
export npm_config_cache="${PAYTOOL_CACHE_DIR:-$HOME/.cache/paytool}/npm"
lock=tests/catalog/package-lock.json
stamp=tests/catalog/node_modules/.paytool-lock
# `npm ci` rebuilds node_modules each time; skip it while the lock is the one installed.
if ! { [[ -f $stamp ]] && cmp -s "$lock" "$stamp"; }; then
  (cd tests/catalog && npm ci --no-audit --no-fund --loglevel=error)
  cp "$lock" "$stamp"
fi
node --test tests/catalog/
