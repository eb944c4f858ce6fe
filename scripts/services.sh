#!/usr/bin/env bash
# Makes sure the engines the tests use are up on loopback: PostgreSQL (5432), Redis (6379),
# RabbitMQ (5672), NATS with JetStream (4222), an S3-compatible store (moto, 5055) and an SMTP
# server that keeps what it receives in a maildir (aiosmtpd, 8025, /tmp/telar-smtp/maildir); and
# promtool, which checks every service's /metrics; kubernetes-validate for deploy/k8s;
# check-jsonschema (the Compose Specification's schema built in) for deploy/compose.yaml. Starts
# any that is down and installs any that is missing (Debian packages, PyPI). Fails loudly: a suite
# that skips its real-engine tests is a failing suite.
set -euo pipefail

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] FAILED: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # name port seconds
  local deadline=$((SECONDS + $3))
  until port_open "$2"; do
    (( SECONDS < deadline )) || die "$1 did not open port $2 within $3 s"
    sleep 0.5
  done
}

apt_install() {
  log "installing $*"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq >/dev/null || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

ensure_postgres() {
  if ! command -v pg_ctlcluster >/dev/null; then
    apt_install postgresql postgresql-client
  fi
  if ! port_open 5432; then
    log "starting PostgreSQL"
    local version
    version=$(ls /etc/postgresql | sort -V | tail -1)
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba" 2>/dev/null; then
      sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba" || true
    fi
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || die "PostgreSQL did not start"
    wait_port PostgreSQL 5432 60
  fi
  local url_db=test
  if ! psql -h 127.0.0.1 -U postgres -d "$url_db" -tAc 'select 1' >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -d postgres -c "create database $url_db" >/dev/null 2>&1 \
      || die "PostgreSQL is up but database '$url_db' is not reachable as user postgres (trust auth on 127.0.0.1 needed)"
  fi
  log "PostgreSQL ok"
}

ensure_redis() {
  command -v redis-server >/dev/null || apt_install redis-server
  if ! port_open 6379; then
    log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || die "Redis did not start"
    wait_port Redis 6379 30
  fi
  [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ] || die "Redis does not answer PING"
  log "Redis ok"
}

ensure_rabbitmq() {
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  if ! port_open 5672; then
    log "starting RabbitMQ"
    rabbitmq-server -detached || die "RabbitMQ did not start"
    wait_port RabbitMQ 5672 120
  fi
  log "RabbitMQ ok"
}

ensure_nats() {
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || apt_install nats-server
  if ! port_open 4222; then
    log "starting NATS (JetStream)"
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
      -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log \
      || die "NATS did not start"
    wait_port NATS 4222 30
  fi
  log "NATS ok"
}

ensure_moto() {
  if ! command -v moto_server >/dev/null; then
    log "installing moto (S3-compatible test server, PyPI)"
    python3 -m pip install -q 'moto[server]' >/dev/null 2>&1 || die "pip install moto[server] failed"
  fi
  if ! port_open 5055; then
    log "starting moto (S3) on 5055"
    mkdir -p /var/log
    nohup moto_server -H 127.0.0.1 -p 5055 >/var/log/moto.log 2>&1 &
    wait_port moto 5055 60
  fi
  log "moto (S3) ok"
}

ensure_smtp() {
  if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
    log "installing aiosmtpd (SMTP test server, PyPI)"
    python3 -m pip install -q aiosmtpd >/dev/null 2>&1 || die "pip install aiosmtpd failed"
  fi
  if ! port_open 8025; then
    log "starting aiosmtpd on 8025"
    mkdir -p /tmp/telar-smtp
    nohup python3 -m aiosmtpd -n -l 127.0.0.1:8025 -c aiosmtpd.handlers.Mailbox /tmp/telar-smtp/maildir \
      >/tmp/telar-smtp/server.log 2>&1 &
    wait_port aiosmtpd 8025 30
  fi
  log "SMTP (aiosmtpd) ok"
}

ensure_promtool() {
  command -v promtool >/dev/null || apt_install --no-install-recommends prometheus
  command -v promtool >/dev/null || die "promtool is missing after installing prometheus"
  log "promtool ok"
}

ensure_kubernetes_validate() {
  command -v kubernetes-validate >/dev/null \
    || python3 -m pip install -q kubernetes-validate >/dev/null 2>&1 \
    || die "pip install kubernetes-validate failed"
  command -v kubernetes-validate >/dev/null || die "kubernetes-validate is not on PATH after installing it"
  log "kubernetes-validate ok"
}

# check-jsonschema validates deploy/compose.yaml against the Compose Specification's schema it
# ships (vendor.compose-spec, offline); scripts/check-compose.py reads the file with its ruamel.yaml.
ensure_check_jsonschema() {
  if ! command -v check-jsonschema >/dev/null || ! python3 -c 'import ruamel.yaml' 2>/dev/null; then
    python3 -m pip install -q check-jsonschema >/dev/null 2>&1 || die "pip install check-jsonschema failed"
  fi
  command -v check-jsonschema >/dev/null || die "check-jsonschema is not on PATH after installing it"
  python3 -c 'import ruamel.yaml' 2>/dev/null || die "python3 cannot import ruamel.yaml after installing check-jsonschema"
  log "check-jsonschema ok"
}

ensure_postgres
ensure_redis
ensure_rabbitmq
ensure_nats
ensure_moto
ensure_smtp
ensure_promtool
ensure_kubernetes_validate
ensure_check_jsonschema
