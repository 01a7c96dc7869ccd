#!/usr/bin/env bash
# Installs the CI server of local delivery: Buildbot (GPL-2.0, run as a separate program, never
# linked), its web UI and its worker, from PyPI into a venv cached under
# ~/.cache/paytool/venv-buildbot-<version>, every package pinned by
# stacks/local/ci/requirements.txt. `paytool up --delivery` runs the master and the worker as
# the `ci` and `ci-worker` components behind the gateway at https://ci.local.test
# (docs/delivery.md). Idempotent: a venv that has the pinned version is left as it is.
#
#   --check   exit 0 when the venv has the pinned version, 1 otherwise (for setup)
#
# Prints the venv's path on stdout; progress goes to stderr.
set -euo pipefail

# --- pinned version (a bump installs beside the old venv) --------------------------------------
VERSION=4.3.0

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
requirements="$here/../stacks/local/ci/requirements.txt"
cache="${PAYTOOL_CACHE_DIR:-$HOME/.cache/paytool}"
venv="$cache/venv-buildbot-$VERSION"

log() { echo "install-buildbot: $*" >&2; }

# `.complete` is written last: an interrupted install never looks finished.
installed() {
  [[ -f $venv/.complete && -x $venv/bin/buildbot && -x $venv/bin/buildbot-worker ]] || return 1
  "$venv/bin/python" -c 'import sys, importlib.metadata as m; sys.exit(m.version("buildbot") != sys.argv[1] or m.version("buildbot-worker") != sys.argv[1])' "$VERSION" 2>/dev/null
}

if [[ ${1:-} == --check ]]; then
  installed && exit 0 || exit 1
fi
if installed; then
  echo "$venv"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.install-buildbot.lock"
if ! flock -n 9; then
  log "another install is running; waiting for it"
  flock 9
fi
if installed; then
  echo "$venv"
  exit 0
fi
grep -q "^buildbot==$VERSION$" "$requirements" || { log "$requirements does not pin buildbot $VERSION"; exit 1; }

log "installing Buildbot $VERSION into $venv"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$requirements"
touch "$venv/.complete"
installed || { log "the venv does not hold Buildbot $VERSION after install"; exit 1; }
log "installed"
echo "$venv"
