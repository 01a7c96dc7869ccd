#!/usr/bin/env bash
# Renders kustomize directories with kubectl's built-in kustomize and validates every object
# against the Kubernetes API's schemas, offline: kubernetes-validate from PyPI (pinned, in a
# virtualenv cached under ~/.cache/paytool), strict (an unknown field fails).
#   scripts/validate-manifests.sh services/loyalty/deploy/overlays/local [DIR ...]
# Exit 0 when every directory renders and every object is valid; 1 otherwise, saying which.
set -euo pipefail
# The directories as given, before the script moves to the project (for its own files).
dirs=()
for dir in "$@"; do dirs+=("$(realpath "$dir")"); done
cd "$(dirname "$0")/.."

version=1.37.0
kubernetes=1.37.0
venv="${PAYTOOL_CACHE_DIR:-$HOME/.cache/paytool}/venv-kubernetes-validate-$version"
if [[ ! -x "$venv/bin/kubernetes-validate" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "kubernetes-validate==$version"
fi
if ! command -v kubectl >/dev/null 2>&1; then
  echo "validate-manifests: kubectl (with kustomize built in) is missing" >&2
  exit 3
fi
[[ ${#dirs[@]} -gt 0 ]] || { echo "usage: scripts/validate-manifests.sh KUSTOMIZE_DIR..." >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for dir in "${dirs[@]}"; do
  rendered="$work/$(echo "$dir" | tr '/' '_').yaml"
  if ! kubectl kustomize "$dir" > "$rendered"; then
    echo "validate-manifests: $dir does not render" >&2
    status=1
    continue
  fi
  objects=$(grep -c '^kind:' "$rendered" || true)
  if [[ $objects -eq 0 ]]; then
    echo "validate-manifests: $dir renders nothing" >&2
    status=1
    continue
  fi
  # Custom resources (an Argo CD Application) have no schema here: they are left out, and said so.
  if "$venv/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$kubernetes" "$rendered"; then
    echo "validate-manifests: $dir: $objects objects valid for Kubernetes $kubernetes"
  else
    echo "validate-manifests: $dir: invalid (above)" >&2
    status=1
  fi
done
exit $status
