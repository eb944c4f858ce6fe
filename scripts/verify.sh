#!/usr/bin/env bash
# The test command: what `.ci/run` runs and what the README tells you to run.
# Real engines first (started or installed if needed), then format, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh

export TELAR_TEST_POSTGRES_URL="${TELAR_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
export TELAR_TEST_REDIS_URL="${TELAR_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export TELAR_TEST_RABBITMQ_URL="${TELAR_TEST_RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export TELAR_TEST_NATS_URL="${TELAR_TEST_NATS_URL:-nats://127.0.0.1:4222}"
export TELAR_TEST_S3_URL="${TELAR_TEST_S3_URL:-http://127.0.0.1:5055}"
export TELAR_TEST_SMTP_PORT="${TELAR_TEST_SMTP_PORT:-8025}"
export TELAR_TEST_SMTP_MAILDIR="${TELAR_TEST_SMTP_MAILDIR:-/tmp/telar-smtp/maildir}"

if ! command -v cargo-nextest >/dev/null; then
  echo "[verify] installing cargo-nextest" >&2
  cargo install cargo-nextest --locked
fi

echo "[verify] promtool: alert rules and their unit tests" >&2
promtool check rules deploy/prometheus/alerts.yaml
promtool test rules deploy/prometheus/alerts.test.yaml
python3 -c 'import json, glob; [json.load(open(f)) for f in glob.glob("deploy/grafana/*.json")]'
echo "[verify] kubernetes-validate deploy/k8s (offline schemas)" >&2
kubernetes-validate --strict --quiet deploy/k8s/*.yaml
echo "[verify] deploy/compose.yaml: Compose Specification schema, references, services (offline)" >&2
check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
python3 scripts/check-compose.py deploy/compose.yaml

echo "[verify] cargo fmt --check" >&2
cargo fmt --all --check
echo "[verify] cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "[verify] cargo nextest" >&2
cargo nextest run --workspace --locked --no-fail-fast
echo "[verify] Carpeta distributed: two operators, a process per service, PostgreSQL + NATS + Redis + S3" >&2
bash scripts/distributed.sh
echo "[verify] saga crash test (bench/run saga-crash --quick, in the test profile)" >&2
cargo run -q --locked -p telar-bench-saga -- crash --quick
