#!/usr/bin/env bash
# Installs one Go program built from source with `go install`, cached under
# ~/.cache/paytool/<name>-<version>/bin/<binary> (idempotent: a re-run with the binary built at
# the pinned module version is a no-op). The install-<tool>.sh scripts pin what to build and
# call this; `paytool setup` calls them.
#
#   install-go-tool.sh NAME MODULE VERSION PACKAGE BINARY [--check]
#     NAME     the cache directory's prefix (toxiproxy, registry)
#     MODULE   the Go module whose version is pinned (its path as go.mod names it)
#     VERSION  the module's version tag (v2.5.0)
#     PACKAGE  the package to build, inside the module (cmd/server; . for the module's root)
#     BINARY   the installed binary's name (go install names it after the package's directory,
#              or for the root after the module's last element that is not a /vN suffix)
#     --check  exit 0 when the binary is built at the pinned version, 1 otherwise
#
# Prints the binary's path on stdout; progress goes to stderr. Needs Go and reach to the Go
# module proxy; builds with the local toolchain, statically (CGO off), stripped.
set -euo pipefail

if (($# < 5)); then
  echo "usage: install-go-tool.sh NAME MODULE VERSION PACKAGE BINARY [--check]" >&2
  exit 2
fi
name=$1 module=$2 version=$3 package=$4 binary=$5 mode=${6:-}

base="${PAYTOOL_CACHE_DIR:-$HOME/.cache/paytool}/$name-${version#v}"
bin="$base/bin"
target="$bin/$binary"
started=$SECONDS

log() { echo "install-$name: $*" >&2; }

# True when the binary was built from the pinned module version.
built() {
  [[ -x $target ]] && go version -m "$target" 2>/dev/null |
    awk -v m="$module" -v v="$version" '$1 == "mod" && $2 == m && $3 == v { found = 1 } END { exit !found }'
}

if [[ $mode == --check ]]; then
  command -v go >/dev/null 2>&1 && built && exit 0 || exit 1
fi
if ! command -v go >/dev/null 2>&1; then
  log "go is missing; install Go (any 1.2x) to build $name"
  exit 3
fi
if built; then
  log "$name $version already installed"
  echo "$target"
  exit 0
fi

mkdir -p "$bin" "$base/logs"
# One build at a time (setup's background step and a concurrent `paytool setup`).
exec 9>"$base/.lock"
if ! flock -n 9; then
  log "another install is running; waiting for it"
  flock 9
fi
if built; then
  log "$name $version installed by a concurrent run"
  echo "$target"
  exit 0
fi

export GOPATH="$base/gopath" GOMODCACHE="$base/gomodcache" GOCACHE="$base/gocache"
export GOBIN="$base/gobin" GOTOOLCHAIN=local GOWORK=off GOFLAGS=-modcacherw CGO_ENABLED=0
unset GOOS GOARCH
logfile="$base/logs/install.log"
if [[ $package == . ]]; then
  path=$module
  built_name=$(basename "${module%/v[0-9]*}")
else
  path=$module/$package
  built_name=$(basename "$package")
fi
log "go install $path@$version (once; minutes on two cores)"
if ! go install -trimpath -ldflags="-s -w" "$path@$version" >"$logfile" 2>&1; then
  log "go install failed; last lines of $logfile:"
  tail -n 30 "$logfile" >&2
  exit 1
fi
mv -f "$GOBIN/$built_name" "$target"
log "$name $version installed in $((SECONDS - started))s"
echo "$target"
