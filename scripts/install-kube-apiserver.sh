#!/usr/bin/env bash
# Builds a real kube-apiserver and etcd from the Go module proxy, cached under
# ~/.cache/paytool/kube-<version>/bin (idempotent: a re-run with both binaries built at the
# pinned versions is a no-op). No cluster can run pods on this kind of machine, but its API
# server can: scripts/kube-apiserver.sh starts the two, and `paytool kube apply` applies every
# stack to them server-side (docs/kubernetes.md).
#
#   --check   exit 0 when both binaries are built at the pinned versions, 1 otherwise
#
# The wrapper modules live in stacks/kind/apiserver/{kube-apiserver,etcd} (go.mod and go.sum
# pinned there). Prints the bin directory on stdout; progress goes to stderr. The first build
# is long on two cores (kube-apiserver is about 200 packages of Kubernetes): it runs at the
# lowest CPU priority so that it can go on beside other work.
set -euo pipefail
cd "$(dirname "$0")/.."

# --- pinned versions (a bump builds beside the old one) ----------------------------------------
KUBERNETES=v1.37.2
ETCD=v3.7.3

base="${PAYTOOL_CACHE_DIR:-$HOME/.cache/paytool}/kube-${KUBERNETES#v}"
bin="$base/bin"
started=$SECONDS
log() { echo "install-kube-apiserver: $*" >&2; }

# True when BINARY was built with MODULE at VERSION.
built() {
  local binary=$1 module=$2 version=$3
  [[ -x $bin/$binary ]] && go version -m "$bin/$binary" 2>/dev/null |
    awk -v m="$module" -v v="$version" '$1 == "dep" && $2 == m && $3 == v { found = 1 } END { exit !found }'
}
both_built() {
  built kube-apiserver k8s.io/kubernetes "$KUBERNETES" && built etcd go.etcd.io/etcd/server/v3 "$ETCD"
}

if [[ ${1:-} == --check ]]; then
  command -v go >/dev/null 2>&1 && both_built && exit 0 || exit 1
fi
if ! command -v go >/dev/null 2>&1; then
  log "go is missing; install Go 1.26 or newer to build the API server"
  exit 3
fi
if both_built; then
  echo "$bin"
  exit 0
fi

mkdir -p "$bin" "$base/logs"
exec 9>"$base/.lock"
if ! flock -n 9; then
  log "another build is running; waiting for it"
  flock 9
fi

export GOMODCACHE="$base/gomodcache" GOCACHE="$base/gocache" GOTOOLCHAIN=local GOWORK=off
export GOFLAGS="-modcacherw -mod=readonly" CGO_ENABLED=0
unset GOOS GOARCH

# build NAME MODULE VERSION LDFLAGS: one wrapper module into $bin/NAME.
build() {
  local name=$1 module=$2 version=$3 ldflags=$4
  if built "$name" "$module" "$version"; then
    log "$name already built at $version"
    return
  fi
  local logfile="$base/logs/$name.log" step=$SECONDS
  log "building $name $version (once; many minutes on two cores)"
  if ! (cd "stacks/kind/apiserver/$name" && nice -n 19 go build -trimpath -ldflags="-s -w $ldflags" -o "$bin/$name.new" .) >"$logfile" 2>&1; then
    log "$name failed to build; last lines of $logfile:"
    tail -n 30 "$logfile" >&2
    exit 1
  fi
  mv -f "$bin/$name.new" "$bin/$name"
  log "$name built in $((SECONDS - step)) s"
}

build etcd go.etcd.io/etcd/server/v3 "$ETCD" ""
# The server reports this version (and kubectl's version skew check reads it).
version_pkg=k8s.io/component-base/version
build kube-apiserver k8s.io/kubernetes "$KUBERNETES" \
  "-X $version_pkg.gitVersion=$KUBERNETES -X $version_pkg.gitMajor=1 -X $version_pkg.gitMinor=37 -X $version_pkg.gitTreeState=clean"
# The build cache is about 3 GB and only a rebuild of these versions would read it.
rm -rf "$GOCACHE"
log "ready in $((SECONDS - started)) s: $bin"
echo "$bin"
