#!/usr/bin/env bash
# Installs VictoriaLogs (Apache-2.0; its web UI is embedded in the binary), built from source and
# cached under ~/.cache/paytool/victorialogs-<version> by scripts/install-go-tool.sh. `paytool up`
# runs it as the `logs` component: every component's log is shipped to it by the collector and
# searched at https://logs.local.test and with `paytool logs --query` (docs/observability.md).
#
#   --check   exit 0 when the binary is built at the pinned version, 1 otherwise (for setup)
#
# Prints the binary's path on stdout.
set -euo pipefail

# --- pinned version (a bump installs beside the old one) ---------------------------------------
MODULE=github.com/VictoriaMetrics/VictoriaLogs
VERSION=v1.52.2

exec "$(dirname "${BASH_SOURCE[0]}")/install-go-tool.sh" victorialogs "$MODULE" "$VERSION" app/victoria-logs victoria-logs "$@"
