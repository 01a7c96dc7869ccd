#!/usr/bin/env bash
# Installs Toxiproxy's server (Shopify/toxiproxy, MIT), built from source and cached under
# ~/.cache/paytool/toxiproxy-<version> by scripts/install-go-tool.sh. `paytool up --chaos` runs
# it as the `toxiproxy` component: the services reach PostgreSQL, Keycloak and each other
# through its proxies, and `paytool chaos` adds latency, resets, cuts... there (docs/chaos.md).
# This kernel has no netem, so this is where network faults come from.
#
#   --check   exit 0 when the binary is built at the pinned version, 1 otherwise (for setup)
#
# Prints the binary's path on stdout. The module asks for an old Go (1.17), so the local
# toolchain builds it (about a minute on two cores).
set -euo pipefail

# --- pinned version (a bump installs beside the old one) ---------------------------------------
MODULE=github.com/Shopify/toxiproxy/v2
VERSION=v2.5.0

exec "$(dirname "${BASH_SOURCE[0]}")/install-go-tool.sh" toxiproxy "$MODULE" "$VERSION" cmd/server toxiproxy-server "$@"
