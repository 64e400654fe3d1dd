#!/usr/bin/env bash
# Fails when gen/ is not what the protos generate (someone edited proto/ or
# gen/ without `npm run gen`).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npx buf generate -o "$tmp" 2>/dev/null
npx buf build -o "$tmp/gen/novamesh.binpb" 2>/dev/null
if ! diff -r "$tmp/gen" gen >/dev/null; then
  diff -r "$tmp/gen" gen | head -20 >&2
  echo "check-gen: gen/ is stale; run 'npm run gen' and commit the result" >&2
  exit 1
fi
echo "check-gen: gen/ is current"
