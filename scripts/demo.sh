#!/usr/bin/env bash
# The first of the README's two commands: build, bring the platform up on this machine, and
# show it working.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
echo "demo: building the workspace (release)…" >&2
cargo build --release --workspace --bins --quiet
paytool=target/release/paytool
[[ -n "${CARGO_TARGET_DIR:-}" ]] && paytool="$CARGO_TARGET_DIR/release/paytool"

"$paytool" up

https_port=$("$paytool" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["gateway"]["https_port"])')
ca=$("$paytool" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["gateway"]["ca_certificate"])')
echo
echo "demo: a request through the TLS gateway, verified against the platform's own CA:"
curl --silent --show-error --fail --cacert "$ca" \
  --resolve "whoami.local.test:${https_port}:127.0.0.1" \
  "https://whoami.local.test:${https_port}/demo?hello=world"
echo
"$paytool" status
echo
echo "demo: the ledger's invariants, checked by the orchestrator through its authenticated API:"
"$paytool" ledger verify
