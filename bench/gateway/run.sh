#!/usr/bin/env bash
# The gateway against nginx: one upstream, one load tool (wrk), the same connections, three
# targets — (a) the upstream itself, (b) nginx as a plain keep-alive proxy_pass, (c) the telar
# gateway verifying a JWT and counting the rate limit on every request. Runs are interleaved and
# the medians reported. Then a large upload through each proxy, with the gateway's peak memory.
set -euo pipefail
quick="${1:-}"
duration=8s; warmup=2s; runs=5; upload_mib=1024
if [ "$quick" = "--quick" ]; then duration=3s; warmup=1s; runs=1; upload_mib=256; fi
connections=64

if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
for tool in wrk nginx curl; do
  if ! command -v "$tool" >/dev/null; then
    echo "[bench] installing $tool" >&2
    pkg=$tool; [ "$tool" = nginx ] && pkg=nginx-light
    $SUDO apt-get install -y -qq "$pkg" >/dev/null || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "$pkg" >/dev/null; }
  fi
done
echo "[bench] building release binaries" >&2
cargo build --release -q -p telar-bench-gateway
bin=./target/release/telar-bench-gateway

work=$(mktemp -d)
chmod 755 "$work"
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"' EXIT

wait_for_url() { # file -> url
  for _ in $(seq 1 200); do grep -q '^url=' "$1" 2>/dev/null && break; sleep 0.05; done
  grep -o '^url=.*' "$1" | head -1 | cut -d= -f2
}
mkfifo "$work/up.in" "$work/gw.in"
$bin upstream < "$work/up.in" > /dev/null 2> "$work/up.err" &
exec 7> "$work/up.in"
upstream=$(wait_for_url "$work/up.err")
$bin gateway "$upstream" < "$work/gw.in" > "$work/gw.out" 2> "$work/gw.err" &
gateway_pid=$!
exec 8> "$work/gw.in"
gateway=$(wait_for_url "$work/gw.err")
token=$(head -1 "$work/gw.out")

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<CONF
user root;
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log $work/nginx/access.log;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  upstream app { server ${upstream#http://}; keepalive 128; }
  server {
    listen 127.0.0.1:$port;
    client_max_body_size 0;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
    location /upload {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
    }
  }
}
CONF
nginx -c "$work/nginx.conf" -p "$work/nginx" 
nginx="http://127.0.0.1:$port"
for _ in $(seq 1 100); do curl -s -o /dev/null "$nginx/api/x" && break; sleep 0.05; done
# nginx's workers (the master only supervises): their CPU is compared with the gateway's.
nginx_workers=$(pgrep -P "$(cat "$work/nginx.pid")" | tr '\n' ' ')

path=/api/citizens/1032456789
status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$gateway$path")
[ "$status" = 200 ] || { echo "gateway answered $status" >&2; exit 1; }
status=$(curl -s -o /dev/null -w '%{http_code}' "$gateway$path")
[ "$status" = 401 ] || { echo "gateway let a request without a token through ($status)" >&2; exit 1; }

to_ms() { # wrk latency like 120.5us / 1.2ms / 1.1s
  awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000 } else print v }'
}
ticks() { # pids -> CPU ticks (user + system) of all their threads
  local total=0 stat
  for pid in "$@"; do
    for stat in /proc/"$pid"/task/*/stat; do total=$((total + $(awk '{print $14 + $15}' "$stat"))); done
  done
  echo "$total"
}
measure() { # url [pids] -> "rps p50ms p99ms cpu_us_per_request (of pids; 0 without)"
  local out rps p50 p99 url=$1 before after requests cpu=0
  shift
  before=$(ticks "$@")
  out=$(wrk -t1 -c$connections -d"$duration" --latency -H "Authorization: Bearer $token" "$url")
  after=$(ticks "$@")
  if echo "$out" | grep -q 'Non-2xx'; then echo "non-2xx answers from $1" >&2; echo "$out" >&2; exit 1; fi
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(to_ms "$(echo "$out" | awk '$1=="50%" {print $2}')")
  p99=$(to_ms "$(echo "$out" | awk '$1=="99%" {print $2}')")
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  if [ $# -gt 0 ]; then
    cpu=$(awk -v t=$((after - before)) -v n="$requests" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
  fi
  echo "$rps $p50 $p99 $cpu"
}
for target in "$upstream" "$nginx" "$gateway"; do wrk -t1 -c$connections -d"$warmup" -H "Authorization: Bearer $token" "$target$path" > /dev/null; done
: > "$work/runs"
for run in $(seq 1 "$runs"); do
  d=$(measure "$upstream$path"); n=$(measure "$nginx$path" $nginx_workers); g=$(measure "$gateway$path" "$gateway_pid")
  echo "[bench] run $run: direct $d | nginx $n | telar $g   (req/s p50_ms p99_ms cpu_us/req)" >&2
  echo "$d $n $g" >> "$work/runs"
done
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { awk -v c="$1" '{print $c}' "$work/runs" | median; }
ratio=$(awk '{printf "%.3f\n", $9/$5}' "$work/runs" | median)
p99_ratio=$(awk '{ if ($7 > 0) printf "%.3f\n", $11/$7; else print 0 }' "$work/runs" | median)

# A large upload through each proxy (streamed by curl from /dev/zero), and the gateway's peak RSS.
upload() { # url -> seconds
  head -c $((upload_mib * 1024 * 1024)) /dev/zero \
    | curl -s -o "$work/upload.out" -w '%{time_total}' -X POST -T - -H "Authorization: Bearer $token" "$1/upload"
  [ "$(cat "$work/upload.out")" = $((upload_mib * 1024 * 1024)) ] || { echo "upload through $1 lost bytes: $(cat "$work/upload.out")" >&2; exit 1; }
}
rss_before=$(awk '/VmHWM/ {print $2}' /proc/$gateway_pid/status)
t_direct=$(upload "$upstream"); t_nginx=$(upload "$nginx"); t_gateway=$(upload "$gateway")
rss_after=$(awk '/VmHWM/ {print $2}' /proc/$gateway_pid/status)
mibps() { awk -v s="$1" -v m="$upload_mib" 'BEGIN { printf "%.0f", m / s }'; }

echo "load: wrk -t1 -c$connections -d$duration, GET $path with a bearer token, medians of $runs interleaved runs"
echo "direct:  $(col 1) req/s  p50 $(col 2) ms  p99 $(col 3) ms"
echo "nginx:   $(col 5) req/s  p50 $(col 6) ms  p99 $(col 7) ms  CPU $(col 8) µs/request   (proxy_pass, keepalive 128, access log on)"
echo "telar:   $(col 9) req/s  p50 $(col 10) ms  p99 $(col 11) ms  CPU $(col 12) µs/request   (JWT verified, rate limit counted, access log on)"
echo "telar/nginx: throughput ratio $ratio  p99 ratio $p99_ratio (targets: >= 1.0 and <= 1.2)"
echo "upload ${upload_mib} MiB: direct $(mibps "$t_direct") MiB/s  nginx $(mibps "$t_nginx") MiB/s  telar $(mibps "$t_gateway") MiB/s  telar peak RSS $((rss_before / 1024)) -> $((rss_after / 1024)) MiB"
echo "RESULT name=gateway value=$(col 9) reference=$(col 5) ratio=$ratio unit=req/s"
