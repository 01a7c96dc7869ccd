#!/usr/bin/env bash
# The starter chaos experiments (stacks/chaos/experiments), each with the money checked after
# it. Two sizes:
#   scripts/chaos.sh --ci --home DIR   the experiments marked `ci: true`, on a running
#                                      installation (what scripts/test.sh runs, a few minutes)
#   scripts/chaos.sh                   every experiment, on an installation of its own made with
#                                      `paytool up --ha --replicas 2 --chaos` (the nightly-style run,
#                                      about 20 minutes), torn down afterwards
# Each run's journal and markdown report go to $CHAOS_REPORT_DIR (default: a temporary
# directory, printed at the end). Exit status: 0 when every experiment passed, else 1.
set -euo pipefail
cd "$(dirname "$0")/.."

ci=false
home=""
while (($#)); do
  case "$1" in
    --ci) ci=true ;;
    --home) home="$2"; shift ;;
    *) echo "usage: scripts/chaos.sh [--ci] [--home DIR]" >&2; exit 2 ;;
  esac
  shift
done

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
paytool="$target_dir/debug/paytool"
# The services with their failpoints compiled in (the failpoint experiments set them).
cargo build --workspace --bins --features failpoints --quiet
report_dir="${CHAOS_REPORT_DIR:-$(mktemp -d /tmp/paytool-chaos-XXXXXX)}"
mkdir -p "$report_dir"

if [[ -z "$home" ]]; then
  root=$(mktemp -d /tmp/paytool-chaos-home-XXXXXX)
  chmod 755 "$root"
  home="$root/state"
  trap '"$paytool" --home "$home" down --purge >/dev/null 2>&1 || true; rm -rf "$root"' EXIT
  PAYTOOL_PORT_BASE="${PAYTOOL_PORT_BASE:-30000}" "$paytool" --home "$home" up --ha --replicas 2 --chaos
fi

if $ci; then
  names=$("$paytool" chaos list --json | python3 -c 'import json,sys; print("\n".join(e["name"] for e in json.load(sys.stdin) if e["ci"]))')
else
  names=$("$paytool" chaos list --json | python3 -c 'import json,sys; print("\n".join(e["name"] for e in json.load(sys.stdin)))')
fi

passed=0
failed=0
for name in $names; do
  started=$(date +%s)
  if "$paytool" --home "$home" chaos run "$name" --json > "$report_dir/$name.json"; then
    passed=$((passed + 1)); verdict=passed
  else
    failed=$((failed + 1))
    verdict=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["verdict"])' "$report_dir/$name.json" 2>/dev/null || echo error)
  fi
  "$paytool" chaos report "$report_dir/$name.json" > "$report_dir/$name.md" || true
  echo "chaos: $name: $verdict ($(( $(date +%s) - started )) s)"
done
echo "chaos: reports in $report_dir"
echo "chaos: $passed passed, $failed failed"
((failed == 0))
