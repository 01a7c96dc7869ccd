#!/usr/bin/env bash
# Installs the image registry (CNCF Distribution v3, Apache-2.0), built from source and cached
# under ~/.cache/paytool/registry-<version> by scripts/install-go-tool.sh. `paytool up
# --delivery` runs it as the `registry` component behind the gateway at
# https://registry.local.test (docs/delivery.md).
#
#   --check   exit 0 when the binary is built at the pinned version, 1 otherwise (for setup)
#
# Prints the binary's path on stdout. Its modules (storage drivers for three clouds among
# them) are a large download the first time: minutes, in setup's background.
set -euo pipefail

# --- pinned version (a bump installs beside the old one) ---------------------------------------
MODULE=github.com/distribution/distribution/v3
VERSION=v3.1.2

exec "$(dirname "${BASH_SOURCE[0]}")/install-go-tool.sh" registry "$MODULE" "$VERSION" cmd/registry registry "$@"
