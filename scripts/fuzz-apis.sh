#!/usr/bin/env bash
# Fuzz the public consumer and merchant APIs from their OpenAPI 3.1 contracts with schemathesis.
#
# scripts/test.sh runs it bounded (10 examples an operation, 75 s a service) against its test
# platform; by hand, against any running platform, it can run longer:
#
#   scripts/fuzz-apis.sh [STATUS_JSON]
#
# STATUS_JSON is `paytool status --json --show-secrets` output (default: $PAYTOOL_TEST_STATUS).
# It registers a consumer and a merchant through the APIs, logs both in with Keycloak's password
# grant (client paytool-cli), tops the consumer up, then runs `schemathesis run` against each
# service's loopback URL with its bearer token: behind the gateway, whose per-user rate limit
# would answer most generated requests with 429s. A hook (scripts/fuzz/hooks.py) puts a fresh
# Idempotency-Key on every request of an operation that declares one. /internal/ paths and the
# streaming and image endpoints are left out. Environment knobs: FUZZ_MAX_EXAMPLES (30),
# FUZZ_TIME_LIMIT (seconds per service, 150), FUZZ_SEED, FUZZ_REPORT_DIR (/tmp/paytool-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
venv="${PAYTOOL_FUZZ_VENV:-$HOME/.cache/paytool/venv}"
status_json="${1:-${PAYTOOL_TEST_STATUS:-}}"
max_examples="${FUZZ_MAX_EXAMPLES:-30}"
time_limit="${FUZZ_TIME_LIMIT:-150}"
report_dir="${FUZZ_REPORT_DIR:-/tmp/paytool-fuzz}"
[[ -n "$status_json" && -r "$status_json" ]] || {
  echo "fuzz: give the status JSON (paytool status --json --show-secrets) as \$1 or PAYTOOL_TEST_STATUS" >&2
  exit 2
}

if [[ ! -x "$venv/bin/python" ]]; then
  echo "fuzz: creating $venv" >&2
  python3 -m venv "$venv"
fi
if [[ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" != "$SCHEMATHESIS_VERSION" ]]; then
  echo "fuzz: installing schemathesis==$SCHEMATHESIS_VERSION into $venv" >&2
  "$venv/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi
st="$venv/bin/schemathesis"

field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval("d"+sys.argv[2]))' "$status_json" "$1"; }
keycloak_url=$(field '["connections"]["keycloak_url"]')
realm=$(field '["connections"]["keycloak_realm"]')
service_url() {
  python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
c = next(c for c in d["components"] if c["name"] == sys.argv[2])
print(next(u for u in c["urls"] if u.startswith("http://127.0.0.1")))' "$status_json" "$1"
}
consumer_url=$(service_url consumer-api)
merchant_url=$(service_url merchant-api)
token_url="$keycloak_url/realms/$realm/protocol/openid-connect/token"

curl_json() { curl --silent --show-error --fail-with-body -H 'Content-Type: application/json' "$@"; }
login() {
  curl --silent --show-error --fail-with-body -d grant_type=password -d client_id=paytool-cli \
    --data-urlencode "username=$1" --data-urlencode "password=$2" "$token_url" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

stamp="$(date +%s)-$$"
password="fuzz password $stamp"  # pragma: allowlist secret (made per run, for a throwaway test account)
consumer_email="fuzz-consumer-$stamp@example.test"
merchant_email="fuzz-merchant-$stamp@example.test"

echo "fuzz: registering $consumer_email and $merchant_email" >&2
curl_json -d "{\"email\":\"$consumer_email\",\"password\":\"$password\",\"name\":\"Fuzz Consumer\",\"currency\":\"JPY\"}" \
  "$consumer_url/v1/consumers" >/dev/null
curl_json -d "{\"name\":\"Fuzz Shop\",\"city\":\"Tokyo\",\"country\":\"JP\",\"mcc\":\"5812\",\"currency\":\"JPY\",\"email\":\"$merchant_email\",\"password\":\"$password\"}" \
  "$merchant_url/v1/merchants" >/dev/null
consumer_token=$(login "$consumer_email" "$password")
merchant_token=$(login "$merchant_email" "$password")
curl_json -H "Authorization: Bearer $consumer_token" -H "Idempotency-Key: fuzz-top-up-$stamp" \
  -d '{"amount":{"value":1000000,"currency":"JPY"}}' "$consumer_url/v1/wallet/top-ups" >/dev/null
echo "fuzz: consumer topped up with 1 000 000 JPY" >&2

mkdir -p "$report_dir"
export SCHEMATHESIS_HOOKS=hooks
export PYTHONPATH="$PWD/scripts/fuzz${PYTHONPATH:+:$PYTHONPATH}"
checks=not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance
seed=()
[[ -n "${FUZZ_SEED:-}" ]] && seed=(--seed "$FUZZ_SEED")

run() { # name spec url token
  local name=$1 spec=$2 url=$3 token=$4
  echo "fuzz: $name at $url (at most $max_examples examples an operation, ${time_limit}s)" >&2
  timeout --kill-after=10 "$time_limit" "$st" run "$spec" \
    --url "$url" \
    --header "Authorization: Bearer $token" \
    --checks "$checks" \
    --max-examples "$max_examples" \
    --exclude-path-regex '^/internal/|^/v1/transactions/(stream|ws)$|\.(svg|png)$' \
    --request-timeout 10 \
    --max-time "$((time_limit - 15))" \
    --report junit --report-dir "$report_dir/$name" \
    --no-color "${seed[@]}"
}

rc=0
run consumer-api services/contracts/consumer-api.yaml "$consumer_url" "$consumer_token" || rc=$?
run merchant-api services/contracts/merchant-api.yaml "$merchant_url" "$merchant_token" || rc=$?
echo "fuzz: done (exit $rc); JUnit reports under $report_dir" >&2
exit "$rc"
