#!/usr/bin/env bash
# Installs OAuth2 Proxy (MIT), built from source and cached under
# ~/.cache/paytool/oauth2-proxy-<version> by scripts/install-go-tool.sh. `paytool up` runs it as
# the `sign-in` component: the gateway asks it (auth_request) before it lets a browser reach the
# operators' web UIs (logs, dashboards, traces), and it signs the person in with Keycloak
# (docs/observability.md).
#
#   --check   exit 0 when the binary is built at the pinned version, 1 otherwise (for setup)
#
# Prints the binary's path on stdout.
set -euo pipefail

# --- pinned version (a bump installs beside the old one) ---------------------------------------
MODULE=github.com/oauth2-proxy/oauth2-proxy/v7
VERSION=v7.15.6

exec "$(dirname "${BASH_SOURCE[0]}")/install-go-tool.sh" oauth2-proxy "$MODULE" "$VERSION" . oauth2-proxy "$@"
