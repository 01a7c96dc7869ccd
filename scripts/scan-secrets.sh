#!/usr/bin/env bash
# Fails when a file git tracks holds something that looks like a secret and is not in the
# audited baseline (.secrets.baseline: test fixtures and public examples, each marked
# is_secret=false). The scanner is detect-secrets from PyPI, pinned, in a virtualenv cached
# under ~/.cache/paytool. Real secrets are made per installation into .paytool/ (0600), which
# git ignores.
set -euo pipefail
cd "$(dirname "$0")/.."

version=1.5.0
venv="$HOME/.cache/paytool/venv-detect-secrets-$version"
if [[ ! -x "$venv/bin/detect-secrets-hook" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "detect-secrets==$version"
fi

# The scanner must be able to fail: a file with AWS's documented example key is caught.
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n' > "$probe/probe.txt"  # pragma: allowlist secret (AWS's documented example key, planted on purpose)
if "$venv/bin/detect-secrets-hook" "$probe/probe.txt" >/dev/null 2>&1; then
  echo "scan-secrets: the scanner did not catch a planted key; refusing to trust it" >&2
  exit 1
fi

# Left out: lock files, the QR fixtures, the baseline itself, and sqlx's offline query data
# (services/*/.sqlx: the queries' text and types, each named and keyed by a SHA-256 of its text,
# which the scanner takes for hex secrets).
mapfile -t files < <(git ls-files | grep -Ev '(^|/)(Cargo\.lock|package-lock\.json)$|^services/emvco/tests/data/|^services/[^/]+/\.sqlx/|^\.secrets\.baseline$')
# The hook rewrites its baseline when known findings only moved to other lines, and fails
# once for that: it works on a copy, and a second run tells moved lines from new findings.
cp .secrets.baseline "$probe/baseline"
# External Secrets' manifests name secrets without holding any: a key's name (`secretKey:`)
# and a template's reference to it (`{{ .password }}`) are not secrets.
exclude_lines='secretKey:|\{\{ \.[a-z_]+( \| urlquery)? \}\}'
scan() { "$venv/bin/detect-secrets-hook" --baseline "$probe/baseline" --exclude-lines "$exclude_lines" "${files[@]}"; }
if ! scan >/dev/null 2>&1 && ! scan; then
  echo "scan-secrets: a secret-like string is committed (above). Remove it, or if it is a test fixture, audit it into .secrets.baseline: $venv/bin/detect-secrets scan --baseline .secrets.baseline && $venv/bin/detect-secrets audit .secrets.baseline" >&2
  exit 1
fi
echo "scan-secrets: ${#files[@]} files, nothing new that looks like a secret"
