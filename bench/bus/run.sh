#!/usr/bin/env bash
# bench/bus/run.sh BACKEND [--quick]: the bus on BACKEND against its raw reference, measured in
# the same run (embedded: raw batched SQLite inserts of the same 1 KiB rows at the same
# durability, RESULT at synchronous = full for batched publishes — as the reference inserts and
# the outbox relay publishes — with single publishes from 256 publishers printed beside it; nats: bare async-nats JetStream; rabbitmq: bare lapin
# with confirms). The broker backends need their server running (scripts/services.sh).
set -euo pipefail
backend="${1:-embedded}"; quick="${2:-}"
messages=100000
if [ "$quick" = "--quick" ]; then messages=10000; fi
case "$backend" in
  embedded) name=bus; ours="embedded sync=full"; raw="raw_sqlite sync=full" ;;
  nats) name=bus-nats; ours="nats "; raw="raw_nats " ;;
  rabbitmq) name=bus-rabbitmq; ours="rabbitmq "; raw="raw_rabbitmq " ;;
  *) echo "unknown backend $backend" >&2; exit 2 ;;
esac
if [ "$backend" != embedded ]; then bash scripts/services.sh >&2; fi
echo "[bench] building release binary" >&2
cargo build --release -q -p telar-bench-bus
out=$(./target/release/telar-bench-bus "$backend" "$messages")
echo "$out"
value=$(echo "$out" | awk -v p="^$ours" '$0 ~ p {split($3,a,"="); print a[2]}')
reference=$(echo "$out" | awk -v p="^$raw" '$0 ~ p {split($3,a,"="); print a[2]}')
ratio=$(awk -v a="$value" -v b="$reference" 'BEGIN { printf "%.3f", a/b }')
echo "RESULT name=${name} value=${value} reference=${reference} ratio=${ratio} unit=msgs/s"
