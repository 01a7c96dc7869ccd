#!/usr/bin/env bash
# The first of the README's two commands: build, bring the platform up on this machine, and
# show it working.
set -euo pipefail
cd "$(dirname "$0")/.."

demo_started=$SECONDS
scripts/bootstrap.sh
# The OpenTelemetry Collector and Jaeger are built from source (about ten minutes on a fresh
# machine): start that now, beside the Rust build. `paytool up` finds it running (its lock) and
# starts the platform without them; the supervisor adds them when they are built.
cache="${PAYTOOL_CACHE_DIR:-$HOME/.cache/paytool}"
mkdir -p "$cache/logs"
if ! scripts/install-observability.sh --check; then
  echo "demo: building the collector and Jaeger in the background (log $cache/logs/setup-observability.log)" >&2
  setsid scripts/install-observability.sh >"$cache/logs/setup-observability.log" 2>&1 </dev/null &
fi
echo "demo: building the workspace (release)…" >&2
cargo build --release --workspace --bins --quiet
paytool=target/release/paytool
[[ -n "${CARGO_TARGET_DIR:-}" ]] && paytool="$CARGO_TARGET_DIR/release/paytool"

"$paytool" up

status_json=$("$paytool" status --json)
field() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval("d"+sys.argv[2]))' "$1" "$2"; }
https_port=$(field "$status_json" '["gateway"]["https_port"]')
ca=$(field "$status_json" '["gateway"]["ca_certificate"]')
suffix=""; [[ "$https_port" != 443 ]] && suffix=":$https_port"
tls=(--silent --show-error --fail-with-body --cacert "$ca")
for host in whoami sso api merchant; do tls+=(--resolve "$host.local.test:$https_port:127.0.0.1"); done

echo
echo "demo: a request through the TLS gateway, verified against the platform's own CA:"
curl "${tls[@]}" "https://whoami.local.test$suffix/demo?hello=world"

email="demo-$(date +%s)@example.test"
password="correct horse battery staple"
echo
echo "demo: register $email (a Keycloak user with role consumer, and a wallet in the ledger):"
curl "${tls[@]}" -H 'Content-Type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"$password\",\"name\":\"Demo Consumer\"}" \
  "https://api.local.test$suffix/v1/consumers"
echo
echo "demo: log in through Keycloak (paytool-cli, password grant) and top up 2 500 JPY, twice with one Idempotency-Key:"
token=$(curl "${tls[@]}" -d grant_type=password -d client_id=paytool-cli --data-urlencode "username=$email" \
  --data-urlencode "password=$password" "https://sso.local.test$suffix/realms/paytool/protocol/openid-connect/token" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
key="demo-top-up-$(date +%s)"
for attempt in 1 2; do
  curl "${tls[@]}" -H "Authorization: Bearer $token" -H "Idempotency-Key: $key" -H 'Content-Type: application/json' \
    -d '{"amount":{"value":2500,"currency":"JPY"}}' "https://api.local.test$suffix/v1/wallet/top-ups"
  echo
done
echo "demo: the wallet (topped up once):"
curl "${tls[@]}" -H "Authorization: Bearer $token" "https://api.local.test$suffix/v1/wallet"
echo

login() {
  curl "${tls[@]}" -d grant_type=password -d client_id=paytool-cli --data-urlencode "username=$1" \
    --data-urlencode "password=$password" "https://sso.local.test$suffix/realms/paytool/protocol/openid-connect/token" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
merchant_email="cafe-$(date +%s)@example.test"
echo
echo "demo: register a merchant, $merchant_email (role merchant, an account in the ledger):"
curl "${tls[@]}" -H 'Content-Type: application/json' \
  -d "{\"name\":\"Demo Cafe\",\"city\":\"Tokyo\",\"country\":\"JP\",\"mcc\":\"5812\",\"currency\":\"JPY\",\"email\":\"$merchant_email\",\"password\":\"$password\"}" \
  "https://merchant.local.test$suffix/v1/merchants"
merchant_token=$(login "$merchant_email")
echo
echo "demo: the merchant asks for 1 200 JPY with a dynamic EMVCo QR code:"
request=$(curl "${tls[@]}" -H "Authorization: Bearer $merchant_token" -H "Idempotency-Key: demo-qr-$(date +%s)" \
  -H 'Content-Type: application/json' -d '{"amount":{"value":1200,"currency":"JPY"},"reference":"DEMO-1"}' \
  "https://merchant.local.test$suffix/v1/payment-requests")
payload=$(field "$request" '["payload"]')
echo "$payload"
"$paytool" qr decode "$payload"
png=$(mktemp --suffix=.png)
curl "${tls[@]}" -H "Authorization: Bearer $merchant_token" -o "$png" \
  "https://merchant.local.test$suffix$(field "$request" '["qr_png_url"]')"
if command -v zbarimg >/dev/null; then
  echo "demo: zbarimg reads the QR PNG back: $(zbarimg --raw --quiet "$png")"
fi
rm -f "$png"
echo
echo "demo: the consumer scans and pays it (twice with one Idempotency-Key: charged once):"
key="demo-pay-$(date +%s)"
for attempt in 1 2; do
  paid=$(curl "${tls[@]}" -H "Authorization: Bearer $token" -H "Idempotency-Key: $key" -H 'Content-Type: application/json' \
    -d "{\"qr\":\"$payload\"}" "https://api.local.test$suffix/v1/payments")
  echo "$paid"
done
payment_id=$(field "$paid" '["id"]')
echo "demo: the first payment completed $((SECONDS - demo_started)) s after this script started"
echo "demo: the merchant's transactions:"
curl "${tls[@]}" -H "Authorization: Bearer $merchant_token" "https://merchant.local.test$suffix/v1/transactions"
echo
echo
"$paytool" status
echo
echo "demo: the ledger's invariants, checked by the orchestrator through its authenticated API:"
"$paytool" ledger verify
echo
echo "demo: the whole flow with paytool itself (registrations, top-up, QR payment, code charge, P2P, refund, the merchant's live feed, ledger verify):"
"$paytool" pay demo
echo
echo "demo: the web apps — sign in with a consumer or merchant you register (paytool pay register ...):"
echo "  merchant dashboard  https://merchant.local.test$suffix/"
echo "  consumer wallet     https://wallet.local.test$suffix/"
echo "  (trust the platform's CA first: sudo $paytool tls init --trust, or import .paytool/tls/ca.pem into your browser)"
echo
echo "demo: the QR payment above ($payment_id), followed through the platform:"
trace_id=$("$paytool" trace "$payment_id" --json --wait-ms 15000 | python3 -c 'import json,sys; print(json.load(sys.stdin)["trace_id"])')
"$paytool" trace "$payment_id"
echo "demo: its log lines in every service, from VictoriaLogs (paytool logs --trace $trace_id):"
"$paytool" logs --trace "$trace_id" --wait-ms 15000
operator_password=$("$paytool" status --json --show-secrets | python3 -c 'import json,sys; print(json.load(sys.stdin)["connections"]["operations"]["password"])')
echo
echo "demo: the operators' web UIs — sign in as operator, password $operator_password:"
echo "  logs                https://logs.local.test$suffix/select/vmui/  (search: trace_id:$trace_id)"
echo "  dashboards          https://dashboards.local.test$suffix/  (Payments: the demo's payments and amounts)"
echo "  traces              https://traces.local.test$suffix/traces/$trace_id  (or search the payment id $payment_id)"
