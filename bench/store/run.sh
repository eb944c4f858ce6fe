#!/usr/bin/env bash
# bench/store/run.sh [--quick]: the event store against raw SQL on the same SQLite file (the
# embedded default) and on the running PostgreSQL; RESULT is SQLite's single-event appends.
set -euo pipefail
quick="${1:-}"
bash scripts/services.sh >&2
echo "[bench] building release binary" >&2
cargo build --release -q -p telar-bench-store
./target/release/telar-bench-store postgres $quick | grep -v '^RESULT'
./target/release/telar-bench-store sqlite $quick
