#!/usr/bin/env bash
# Installs podman (Debian, Apache-2.0) and runc, the container engine the delivery test starts a
# service's image with (cli/tests/delivery.rs): no Docker engine runs on this kind of machine,
# and Debian's podman does with runc. Nothing is configured machine-wide: the test gives podman
# its own configuration (CONTAINERS_CONF) and storage. Idempotent: present packages are kept.
#
#   --check   exit 0 when both are installed, 1 otherwise
set -euo pipefail

installed() { command -v podman >/dev/null && command -v runc >/dev/null; }

if [[ ${1:-} == --check ]]; then
  installed && exit 0 || exit 1
fi
if installed; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-podman: not root; run: sudo apt-get install -y podman runc" >&2
  exit 1
fi
echo "install-podman: installing podman and runc (apt-get)" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman runc >/dev/null
installed
