#!/usr/bin/env bash
# Installs Toxiproxy's server (Shopify/toxiproxy, MIT), built from source with `go install` and
# cached under ~/.cache/paytool/toxiproxy-<version> (idempotent: a re-run with the binary built
# is a no-op). `paytool up --chaos` runs it as the `toxiproxy` component: the services reach
# PostgreSQL, Keycloak and each other through its proxies, and `paytool chaos` adds latency,
# resets, cuts... there (docs/chaos.md). This kernel has no netem, so this is where network
# faults come from.
#
#   --check   exit 0 when the binary is built at the pinned version, 1 otherwise (for setup)
#
# Prints the binary's path on stdout; progress goes to stderr. Needs Go and reach to the Go
# module proxy. The module asks for an old Go (1.17), so the local toolchain builds it.
set -euo pipefail

# --- pinned version (a bump installs beside the old one) ---------------------------------------
MODULE=github.com/Shopify/toxiproxy/v2
VERSION=v2.5.0
PACKAGE=$MODULE/cmd/server

base="${PAYTOOL_CACHE_DIR:-$HOME/.cache/paytool}/toxiproxy-${VERSION#v}"
bin="$base/bin"
# `go install` names the binary after its package directory (`server`): renamed on install.
server="$bin/toxiproxy-server"
started=$SECONDS

log() { echo "install-toxiproxy: $*" >&2; }

# True when the binary was built from the pinned module version.
built() {
  [[ -x $server ]] && go version -m "$server" 2>/dev/null |
    awk -v m="$MODULE" -v v="$VERSION" '$1 == "mod" && $2 == m && $3 == v { found = 1 } END { exit !found }'
}

if [[ ${1:-} == --check ]]; then
  command -v go >/dev/null 2>&1 && built && exit 0 || exit 1
fi
if ! command -v go >/dev/null 2>&1; then
  log "go is missing; install Go (any 1.2x) to build Toxiproxy"
  exit 3
fi
if built; then
  log "toxiproxy $VERSION already installed"
  echo "$server"
  exit 0
fi

mkdir -p "$bin" "$base/logs"
exec 9>"$base/.lock"
if ! flock -n 9; then
  log "another install is running; waiting for it"
  flock 9
fi
if built; then
  log "toxiproxy $VERSION installed by a concurrent run"
  echo "$server"
  exit 0
fi

export GOPATH="$base/gopath" GOMODCACHE="$base/gomodcache" GOCACHE="$base/gocache"
export GOBIN="$base/gobin" GOTOOLCHAIN=local GOWORK=off GOFLAGS=-modcacherw CGO_ENABLED=0
unset GOOS GOARCH
logfile="$base/logs/install.log"
log "go install $PACKAGE@$VERSION (about a minute on two cores, once)"
if ! go install -trimpath -ldflags="-s -w" "$PACKAGE@$VERSION" >"$logfile" 2>&1; then
  log "go install failed; last lines of $logfile:"
  tail -n 30 "$logfile" >&2
  exit 1
fi
mv -f "$GOBIN/server" "$server"
log "toxiproxy $VERSION installed in $((SECONDS - started))s"
echo "$server"
