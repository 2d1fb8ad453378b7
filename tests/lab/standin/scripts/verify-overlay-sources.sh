#!/usr/bin/env bash
# The recipe's check (scripts/verify-overlay-sources.sh at 489af95): every COPY source of the
# overlay Dockerfile exists in its context.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "$0")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
DOCKERFILE="${1:-$REPO_DIR/recipe/Dockerfile.dspark-runtime-overlay}"
CONTEXT_DIR="${2:-$REPO_DIR/recipe/overlay}"
missing=0
while IFS= read -r source; do
  [ -z "$source" ] && continue
  if [ ! -e "$CONTEXT_DIR/$source" ]; then
    echo "Missing overlay source referenced by $(basename "$DOCKERFILE"): $source" >&2
    missing=1
  fi
done < <(awk '$1 == "COPY" { print $2 }' "$DOCKERFILE")
[ "$missing" -eq 0 ] || exit 1
echo "Overlay source check passed for $DOCKERFILE"
