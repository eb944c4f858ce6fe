#!/usr/bin/env bash
# bench/resilience/run.sh [--quick]: limiter decisions/s (memory; Redis next to a bare INCR round
# trip) and breaker + retry + timeout around a call vs the bare call. RESULT: Redis GCRA
# decisions/s against bare INCR round trips (16 concurrent callers each).
set -euo pipefail
bash scripts/services.sh >&2
echo "[bench] building release binary" >&2
cargo build --release -q -p telar-bench-resilience
exec ./target/release/telar-bench-resilience "${1:-}"
