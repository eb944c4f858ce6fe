#!/usr/bin/env bash
# Carpeta in distributed mode: two operators, every service its own process (`telar serve NAME`),
# state in PostgreSQL (a schema per service and operator), events on NATS JetStream (a stream per
# operator), limits and caches in Redis, documents in an S3-compatible store (moto). Then
# `telar demo carpeta` walks the story and moves a citizen with three documents from A to B and
# back, checking every answer. Exit status: the demo's. Run by scripts/verify.sh (CI).
#
#   bash scripts/distributed.sh            # uses target/debug/telar (built if missing)
#   TELAR=target/release/telar bash scripts/distributed.sh
set -euo pipefail
cd "$(dirname "$0")/.."

TELAR=${TELAR:-target/debug/telar}
if [ ! -x "$TELAR" ]; then
  cargo build -q --locked -p telar
fi
PG=${TELAR_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
NATS=${TELAR_TEST_NATS_URL:-nats://127.0.0.1:4222}
REDIS=${TELAR_TEST_REDIS_URL:-redis://127.0.0.1:6379}
S3=${TELAR_TEST_S3_URL:-http://127.0.0.1:5055}

run="d$(date +%s)$$"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if command -v psql >/dev/null; then
    psql -q "$PG" -Atc "SELECT nspname FROM pg_namespace WHERE nspname LIKE '${run}_%'" 2>/dev/null |
      while read -r schema; do psql -q "$PG" -c "DROP SCHEMA \"$schema\" CASCADE" >/dev/null 2>&1 || true; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# config OPERATOR PORT_BASE NAME HUB_URL REDIS_DB → a config file for that operator
config() {
  local op=$1 base=$2 name=$3 hub=$4 redis_db=$5
  local file="$work/$op.toml"
  mkdir -p "$work/$op"
  curl -fsS -X PUT "$S3/${run}-${op}" >/dev/null
  cat >"$file" <<EOF
[database]
backend = "postgres"
[database.postgres]
url = "$PG"
schema_prefix = "${run}_${op}_"
max_connections = 4
[bus]
backend = "nats"
[bus.nats]
url = "$NATS"
stream = "${run^^}${op^^}"
subject_prefix = "${run}${op}"
[bus.dead_letters]
backend = "postgres"
[bus.dead_letters.postgres]
url = "$PG"
[carpeta.auth]
issuer = "http://127.0.0.1:$((base + 8))"
client_secret = "services-secret-${run}-${op}"
[services.gateway]
port = $((base + 0))
[services.gateway.settings.auth]
issuer = "http://127.0.0.1:$((base + 8))"
[services.gateway.settings.limits]
backend = "redis"
redis_url = "$REDIS/$redis_db"
[services.citizen]
port = $((base + 1))
[services.ingestion]
port = $((base + 2))
[services.ingestion.settings.objects]
backend = "s3"
url_secret = "links-secret-${run}-${op}"
[services.ingestion.settings.objects.s3]
bucket = "${run}-${op}"
endpoint = "$S3"
access_key_id = "test"
secret_access_key = "test"
[services.metadata]
port = $((base + 3))
[services.metadata.settings.store]
backend = "redis"
redis_url = "$REDIS/$redis_db"
[services.transfer]
port = $((base + 4))
[services.transfer.settings]
runner = "${op}-transfer-1"
[services.hub-client]
port = $((base + 5))
[services.hub-client.settings]
hub_url = "$hub"
[services.hub-client.settings.store]
backend = "redis"
redis_url = "$REDIS/$redis_db"
[services.hub-client.settings.operator]
name = "$name"
[services.signature]
port = $((base + 6))
[services.read-models]
port = $((base + 7))
[services.identity]
port = $((base + 8))
[services.identity.settings]
issuer = "http://127.0.0.1:$((base + 8))"
[services.iam]
port = $((base + 9))
[services.iam.settings]
builtin_dir = "$work/$op/iam"
[services.notification]
port = $((base + 10))
[services.notification.settings.email]
mailbox_dir = "$work/$op/mailbox"
[services.sharing]
port = $((base + 11))
[services.audit]
port = $((base + 12))
[services.hub-sim]
port = $((base + 19))
EOF
  echo "$file"
}

services=(identity audit notification iam hub-client citizen ingestion metadata read-models signature sharing transfer gateway)
declare -A ports=([identity]=8 [audit]=12 [notification]=10 [iam]=9 [hub-client]=5 [citizen]=1 [ingestion]=2 [metadata]=3 [read-models]=7 [signature]=6 [sharing]=11 [transfer]=4 [gateway]=0 [hub-sim]=19)

# start OPERATOR CONFIG BASE SERVICE... → one process per service
start() {
  local op=$1 file=$2 base=$3
  shift 3
  for service in "$@"; do
    "$TELAR" --config "$file" serve "$service" >"$work/$op/$service.log" 2>&1 &
    pids+=($!)
  done
}

# wait_ready BASE SERVICE... → every /ready answers 200 (at most 90 s)
wait_ready() {
  local base=$1
  shift
  local deadline=$((SECONDS + 90))
  for service in "$@"; do
    local url="http://127.0.0.1:$((base + ports[$service]))/ready"
    until curl -fs -o /dev/null "$url"; do
      if [ $SECONDS -gt $deadline ]; then
        echo "[distributed] $service is not ready at $url; its log:" >&2
        tail -n 20 "$work"/*/"$service.log" >&2 || true
        exit 1
      fi
      sleep 0.2
    done
  done
}

a=$(config a 8000 "Operador A" "http://127.0.0.1:8019" 1)
b=$(config b 8050 "Operador B" "http://127.0.0.1:8019" 2)
echo "[distributed] operator A: ${#services[@]} processes + hub-sim; operator B: ${#services[@]} processes ($run)" >&2
start a "$a" 8000 hub-sim "${services[@]}"
start b "$b" 8050 "${services[@]}"
wait_ready 8000 hub-sim "${services[@]}"
wait_ready 8050 "${services[@]}"
echo "[distributed] every service ready; the demo:" >&2
"$TELAR" --config "$a" demo carpeta \
  --gateway http://127.0.0.1:8000 \
  --peer http://127.0.0.1:8050 --peer-config "$b" --peer-operator "Operador B" \
  --round-trip
