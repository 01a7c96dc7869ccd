#!/usr/bin/env bash
# What the browser tests need, installed by the project and never by hand: Debian's Chromium
# (apt-get) and playwright-core from npm, pinned by tests/browser/package-lock.json. Idempotent and
# quick when present. Playwright never downloads a browser here: the tests drive /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium=/usr/bin/chromium
if [[ ! -x $chromium ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "browser-setup: $chromium is missing; run: sudo apt-get install -y chromium" >&2
    exit 3
  fi
  echo "browser-setup: installing chromium (apt-get)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "browser-setup: npm is missing; install Node.js 20 or newer with npm" >&2
  exit 3
fi

# Downloads are cached with the project's others; PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD keeps any
# install script from fetching a browser of its own (playwright-core has none, but be sure).
export npm_config_cache="${PAYTOOL_CACHE_DIR:-$HOME/.cache/paytool}/npm"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
lock=tests/browser/package-lock.json
stamp=tests/browser/node_modules/.paytool-lock
# `npm ci` deletes and rebuilds node_modules each time (seconds); skip it while the lock file
# is the one it was installed from.
if [[ -f $stamp ]] && cmp -s "$lock" "$stamp"; then
  exit 0
fi
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
cp "$lock" "$stamp"
