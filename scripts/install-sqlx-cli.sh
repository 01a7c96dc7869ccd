#!/usr/bin/env bash
# Installs sqlx-cli (`cargo sqlx`), the version of the sqlx that Cargo.lock pins, under the
# cache (idempotent: nothing to do when that binary is there). It is what writes and checks the
# offline query data (services/*/.sqlx) of the compile-checked `sqlx::query!` macros. Prints
# the binary's directory on stdout, for PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

# The sqlx that Cargo.lock pins: the CLI's offline data must be what these macros read.
version=$(awk '$0 == "name = \"sqlx\"" { getline; gsub(/[^0-9.]/, ""); print; exit }' Cargo.lock)
if [[ ! $version =~ ^0\.8\.[0-9]+$ ]]; then
  echo "install-sqlx-cli: expected sqlx 0.8.x in Cargo.lock, found '${version}'" >&2
  exit 1
fi
root="${PAYTOOL_CACHE_DIR:-$HOME/.cache/paytool}/sqlx-cli"
bin="$root/bin"
# One root per version would leave old ones behind; the version check below replaces instead.
if [[ -x "$bin/cargo-sqlx" ]] && [[ "$("$bin/cargo-sqlx" sqlx --version 2>/dev/null)" == *" $version" ]]; then
  echo "$bin"
  exit 0
fi
echo "install-sqlx-cli: installing sqlx-cli $version under $root (a few minutes, once)" >&2
started=$(date +%s)
cargo install sqlx-cli --version "$version" --locked --force \
  --no-default-features --features postgres,rustls --root "$root" >&2
echo "install-sqlx-cli: sqlx-cli $version installed in $(($(date +%s) - started))s" >&2
echo "$bin"
