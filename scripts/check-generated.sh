#!/usr/bin/env bash
# Fails when src/api differs from what `npm run generate` makes of proto/: generated code is
# never edited by hand, and a proto change must come with its regenerated code.
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
npx buf generate -o "$scratch"
if ! diff -r "$scratch/src/api" src/api >"$scratch/diff"; then
  echo "src/api is out of date with proto/: run 'npm run generate' and commit the result" >&2
  head -20 "$scratch/diff" >&2
  exit 1
fi
echo "src/api matches proto/"
