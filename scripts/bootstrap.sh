#!/usr/bin/env bash
# Installs what building the workspace needs on a fresh Debian machine (idempotent, fast when
# present). The platform's own engines are installed by `paytool setup`, not here.
set -euo pipefail

need=()
for pkg in build-essential cmake pkg-config libcurl4-openssl-dev openssl ca-certificates; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "bootstrap: missing build packages; run: sudo apt-get install -y ${need[*]}" >&2
    exit 3
  fi
  echo "bootstrap: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "bootstrap: cargo is missing; install a Rust toolchain (rustup, or: apt-get install -y cargo rustc)" >&2
  exit 3
fi
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component" >/dev/null 2>&1 || {
      echo "bootstrap: the Rust component $component is missing; run: rustup component add $component" >&2
      exit 3
    }
  fi
done
