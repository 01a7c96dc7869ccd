#!/usr/bin/env bash
# Installs the local runtime's observability engines, built from source with Go and cached under
# ~/.cache/paytool/observability (idempotent; a re-run with everything built is a no-op that
# takes well under a second):
#
#   bin/paytool-otelcol  OpenTelemetry Collector built by the Collector Builder (ocb) from
#                        stacks/local/otel/builder-config.yaml
#   bin/jaeger           Jaeger v2 (the OpenTelemetry-Collector-based `jaeger` binary)
#   bin/builder          the Collector Builder itself (a build tool, not run by the runtime)
#
# and, by their own scripts (each cached beside this one, under <name>-<version>/bin):
#
#   victoria-logs        VictoriaLogs, where the collector sends every component's log
#                        (scripts/install-victorialogs.sh)
#   oauth2-proxy         the sign-in in front of the operators' web UIs
#                        (scripts/install-oauth2-proxy.sh)
#
# Prometheus and Alertmanager are Debian packages installed by `paytool setup`; this script
# only says so when they are missing. The paths of the two runtime binaries go to stdout, one a
# line; progress goes to stderr, one line per step.
#
# Jaeger v2 note: the v2 releases are published as dual tags on the one Go module
# github.com/jaegertracing/jaeger (v2.13.0 is the same commit as v1.76.0). Go can only resolve
# the v1.x tags (the module path has no /v2 suffix), and `go install ...@v1.76.0` is refused
# because that go.mod carries a replace directive. So the binary is installed from a small
# wrapper module that requires github.com/jaegertracing/jaeger v1.76.0 and copies Jaeger's own
# replace directives and go version, which gives exactly the upstream build list.
#
# Requires Go >= 1.26 (the builder's go.mod says go 1.26.0) and reach to the Go module proxy.
set -euo pipefail

# --- pinned versions (bump together; the stamp makes a bump rebuild) --------------------------
OCB_MODULE=go.opentelemetry.io/collector/cmd/builder
OCB_VERSION=v0.165.0 # must match the core versions in stacks/local/otel/builder-config.yaml
JAEGER_MODULE=github.com/jaegertracing/jaeger
JAEGER_MODULE_VERSION=v1.76.0 # Go-resolvable twin tag of the Jaeger v2 release below
JAEGER_RELEASE=v2.13.0
JAEGER_PACKAGE=$JAEGER_MODULE/cmd/jaeger
GO_MIN_MINOR=26
RECIPE=1 # bump when the build steps below change in a way that needs a rebuild

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
manifest="$root/stacks/local/otel/builder-config.yaml"
base="${PAYTOOL_CACHE_DIR:-$HOME/.cache/paytool}/observability"
bin="$base/bin"
stamp="$base/installed.stamp"
otelcol="$bin/paytool-otelcol"
jaeger="$bin/jaeger"
started=$SECONDS

log() { echo "install-observability: $*" >&2; }

debian_hint() {
  local missing=()
  for b in /usr/bin/prometheus /usr/bin/promtool /usr/bin/prometheus-alertmanager; do
    [[ -x $b ]] || missing+=("$b")
  done
  if ((${#missing[@]})); then
    log "hint: ${missing[*]} missing; \`paytool setup\` installs them (Debian packages prometheus, prometheus-alertmanager)"
  fi
}

[[ -f $manifest ]] || { log "manifest $manifest not found"; exit 2; }
manifest_sha=$(sha256sum "$manifest" | cut -d' ' -f1)
want_stamp="recipe $RECIPE
ocb $OCB_MODULE@$OCB_VERSION
jaeger $JAEGER_PACKAGE@$JAEGER_MODULE_VERSION release $JAEGER_RELEASE
otelcol-manifest-sha256 $manifest_sha"

victorialogs="$root/scripts/install-victorialogs.sh"
oauth2_proxy="$root/scripts/install-oauth2-proxy.sh"

up_to_date() {
  [[ -x $otelcol && -x $jaeger && -f $stamp ]] && [[ "$(<"$stamp")" == "$want_stamp" ]] &&
    "$victorialogs" --check && "$oauth2_proxy" --check
}

finish() {
  debian_hint
  printf '%s\n%s\n' "$otelcol" "$jaeger"
  "$victorialogs" 2>/dev/null
  "$oauth2_proxy" 2>/dev/null
}

# `--check`: exit 0 when everything is built at the pinned versions, 1 otherwise (for setup).
if [[ ${1:-} == --check ]]; then
  up_to_date && exit 0 || exit 1
fi

# --- fast path: nothing to do ------------------------------------------------------------------
if up_to_date; then
  log "up to date (ocb $OCB_VERSION, jaeger $JAEGER_RELEASE, manifest ${manifest_sha:0:12})"
  finish
  exit 0
fi

mkdir -p "$bin" "$base/logs"
exec 9>"$base/.lock"
if ! flock -n 9; then
  log "another install is running; waiting for it"
  flock 9
fi
if up_to_date; then # the other run did the work
  log "up to date (built by a concurrent run)"
  finish
  exit 0
fi

# --- Go toolchain and an environment confined to the cache -------------------------------------
if ! command -v go >/dev/null 2>&1; then
  log "go is missing; install Go >= 1.$GO_MIN_MINOR"
  exit 3
fi
go_version=$(GOTOOLCHAIN=local go env GOVERSION)
go_minor=$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$go_version")
if [[ ! $go_minor =~ ^[0-9]+$ ]] || ((go_minor < GO_MIN_MINOR)); then
  log "$go_version is too old; the collector builder needs Go >= 1.$GO_MIN_MINOR"
  exit 3
fi
export GOPATH="$base/gopath" GOMODCACHE="$base/gomodcache" GOCACHE="$base/gocache"
export GOBIN="$bin" GOTOOLCHAIN=local GOWORK=off GOFLAGS=-modcacherw CGO_ENABLED=0
unset GOOS GOARCH
log "[1/6] go $go_version, caches under $base"

# Runs a command (or a function, in a subshell) with its output in a log file; on failure shows
# the log's tail and exits. Functions run this way are in a condition context where `set -e` does
# not apply, so they check each command themselves.
run_logged() {
  local name=$1
  shift
  local logfile="$base/logs/$name.log"
  if ! ("$@") >"$logfile" 2>&1; then
    log "$name failed; last lines of $logfile:"
    tail -n 30 "$logfile" >&2
    exit 1
  fi
}

# True when the Go binary $1 was built from module $2 at version $3 (main module or dependency).
built_from() {
  [[ -x $1 ]] && go version -m "$1" 2>/dev/null | awk -v m="$2" -v v="$3" \
    '($1 == "mod" || $1 == "dep") && $2 == m && $3 == v { found = 1 } END { exit !found }'
}

# A different build recipe invalidates what earlier runs built.
if [[ -f $stamp ]] && [[ "$(head -n 1 "$stamp")" != "recipe $RECIPE" ]]; then
  rm -f "$bin/builder" "$jaeger" "$otelcol" "$otelcol.key"
fi
rm -f "$stamp"

# --- the collector builder ---------------------------------------------------------------------
if built_from "$bin/builder" "$OCB_MODULE" "$OCB_VERSION"; then
  log "[2/6] collector builder $OCB_VERSION already installed"
else
  log "[2/6] go install $OCB_MODULE@$OCB_VERSION"
  run_logged ocb-install go install -trimpath "$OCB_MODULE@$OCB_VERSION"
fi

# --- Jaeger v2 ---------------------------------------------------------------------------------
build_jaeger() {
  local wrapper="$base/src/jaeger" upstream_gomod go_line spec old new o n
  upstream_gomod=$(go mod download -json "$JAEGER_MODULE@$JAEGER_MODULE_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p') || return 1
  [[ -f $upstream_gomod ]] || { echo "no go.mod downloaded for $JAEGER_MODULE@$JAEGER_MODULE_VERSION"; return 1; }
  go_line=$(awk '$1 == "go" { print $2; exit }' "$upstream_gomod")
  rm -rf "$wrapper" && mkdir -p "$wrapper" && cd "$wrapper" || return 1
  printf 'module paytool.local/observability/jaeger\n\ngo %s\n\nrequire %s %s\n' \
    "$go_line" "$JAEGER_MODULE" "$JAEGER_MODULE_VERSION" >go.mod || return 1
  # Copy Jaeger's replace directives (single-line and block form) so the build list is upstream's.
  while IFS= read -r spec; do
    [[ -n ${spec//[[:space:]]/} ]] || continue
    old=${spec%%=>*}
    new=${spec#*=>}
    read -r -a o <<<"$old"
    read -r -a n <<<"$new"
    if ((${#n[@]} != 2)); then
      echo "unsupported replace directive in Jaeger's go.mod: $spec"
      return 1
    fi
    go mod edit -replace="${o[0]}${o[1]:+@${o[1]}}=${n[0]}@${n[1]}" || return 1
  done < <(awk '
    /^replace[[:space:]]*\(/ { block = 1; next }
    block && /^\)/ { block = 0; next }
    block { sub(/\/\/.*/, ""); print; next }
    /^replace[[:space:]]/ { sub(/^replace[[:space:]]+/, ""); sub(/\/\/.*/, ""); print }
  ' "$upstream_gomod")
  go mod edit -print || return 1
  GOFLAGS="$GOFLAGS -mod=mod" go install -trimpath \
    -ldflags="-s -w -X $JAEGER_MODULE/internal/version.latestVersion=$JAEGER_RELEASE" \
    "$JAEGER_PACKAGE"
}
if built_from "$jaeger" "$JAEGER_MODULE" "$JAEGER_MODULE_VERSION"; then
  log "[3/6] jaeger $JAEGER_RELEASE already installed"
else
  log "[3/6] go install $JAEGER_PACKAGE ($JAEGER_MODULE@$JAEGER_MODULE_VERSION = Jaeger $JAEGER_RELEASE)"
  run_logged jaeger-install build_jaeger
fi

# --- paytool-otelcol ---------------------------------------------------------------------------
build_otelcol() {
  mkdir -p "$base/build" && cd "$base/build" && rm -rf paytool-otelcol || return 1
  "$bin/builder" --config="$manifest" --skip-strict-versioning=false || return 1
  cp paytool-otelcol/paytool-otelcol "$otelcol.tmp" && mv -f "$otelcol.tmp" "$otelcol"
}
otelcol_key="ocb $OCB_VERSION manifest-sha256 $manifest_sha"
if [[ -x $otelcol && -f $otelcol.key ]] && [[ "$(<"$otelcol.key")" == "$otelcol_key" ]]; then
  log "[4/6] paytool-otelcol already built from this manifest"
else
  log "[4/6] building paytool-otelcol with ocb (manifest ${manifest_sha:0:12})"
  rm -f "$otelcol.key"
  run_logged ocb-build build_otelcol
  printf '%s\n' "$otelcol_key" >"$otelcol.key"
fi

# --- VictoriaLogs and the sign-in proxy (their scripts keep their own caches and locks) ---------
log "[5/6] victorialogs"
"$victorialogs" >/dev/null
log "[6/6] oauth2-proxy"
"$oauth2_proxy" >/dev/null

printf '%s\n' "$want_stamp" >"$stamp"
log "done in $((SECONDS - started))s"
finish
