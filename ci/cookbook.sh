#!/usr/bin/env bash
# Run every ```sh block of docs/cookbook.md, each in its own bash -euo pipefail, with the
# freshly built topo first on PATH. Fails on the first recipe that fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${TOPO_PATH:-$PWD/target/debug}:$PATH"
doc=docs/cookbook.md
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
awk -v dir="$dir" '
  /^```sh$/ { n++; file = sprintf("%s/%02d.sh", dir, n); inblock = 1; next }
  /^```$/   { inblock = 0; next }
  inblock   { print > file }
' "$doc"
count=0
for f in "$dir"/*.sh; do
  count=$((count + 1))
  title=$(head -1 "$f")
  printf -- '--- recipe %s: %s\n' "$(basename "$f" .sh)" "$title" >&2
  if ! bash -euo pipefail "$f"; then
    echo "ci/cookbook: recipe $(basename "$f" .sh) failed:" >&2
    cat "$f" >&2
    exit 1
  fi
done
echo "cookbook: $count passed, 0 failed"
