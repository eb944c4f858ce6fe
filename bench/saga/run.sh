#!/usr/bin/env bash
# bench/saga/run.sh crash|throughput [--quick] [more args]: see bench/saga/src/main.rs.
set -euo pipefail
mode="${1:-crash}"; shift || true
echo "[bench] building release binary" >&2
cargo build --release -q -p telar-bench-saga
if [ "$mode" = throughput ]; then
  bash scripts/services.sh >&2
  ./target/release/telar-bench-saga throughput postgres "$@" | grep -v '^RESULT'
  exec ./target/release/telar-bench-saga throughput sqlite "$@"
fi
exec ./target/release/telar-bench-saga crash "$@"
