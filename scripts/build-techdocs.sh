#!/usr/bin/env bash
# Builds TechDocs as Backstage's techdocs-core builds them: mkdocs with the techdocs-core plugin
# from PyPI (pinned, in a virtualenv cached under ~/.cache/paytool), for the platform (the root
# mkdocs.yml over docs/) and for each directory given, or else every service that has a
# mkdocs.yml. A service's docs must build with --strict (a broken link fails); the platform's
# docs link into the repository beyond docs/, so they must only build.
#   scripts/build-techdocs.sh [SERVICE_DIR ...]     # sites under target/techdocs/
set -euo pipefail
dirs=()
for dir in "$@"; do dirs+=("$(realpath "$dir")"); done
cd "$(dirname "$0")/.."

version=1.7.1
venv="${PAYTOOL_CACHE_DIR:-$HOME/.cache/paytool}/venv-techdocs-$version"
if [[ ! -x "$venv/bin/mkdocs" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "mkdocs-techdocs-core==$version"
fi
out="$(pwd)/target/techdocs"
mkdir -p "$out"
if [[ ${#dirs[@]} -eq 0 ]]; then
  "$venv/bin/mkdocs" build --quiet -f mkdocs.yml -d "$out/paytool"
  echo "build-techdocs: paytool -> $out/paytool"
  for file in services/*/mkdocs.yml; do
    [[ -f $file ]] && dirs+=("$(realpath "$(dirname "$file")")")
  done
fi
for dir in "${dirs[@]}"; do
  name=$(basename "$dir")
  (cd "$dir" && "$venv/bin/mkdocs" build --quiet --strict -d "$out/$name")
  [[ -f "$out/$name/index.html" ]] || { echo "build-techdocs: $name built no index.html" >&2; exit 1; }
  echo "build-techdocs: $name -> $out/$name"
done
