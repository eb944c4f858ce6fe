#!/usr/bin/env bash
# The embedded bus against raw batched SQLite inserts of the same 1 KiB rows, at both
# durability settings. RESULT compares the default (synchronous = full).
set -euo pipefail
quick="${1:-}"
messages=100000
if [ "$quick" = "--quick" ]; then messages=10000; fi
echo "[bench] building release binary" >&2
cargo build --release -q -p telar-bench-bus
out=$(./target/release/telar-bench-bus "$messages")
echo "$out"
value=$(echo "$out" | awk '/^embedded sync=full/ {split($3,a,"="); print a[2]}')
reference=$(echo "$out" | awk '/^raw_sqlite sync=full/ {split($3,a,"="); print a[2]}')
ratio=$(awk -v a="$value" -v b="$reference" 'BEGIN { printf "%.3f", a/b }')
echo "RESULT name=bus value=${value} reference=${reference} ratio=${ratio} unit=msgs/s"
