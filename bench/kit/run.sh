#!/usr/bin/env bash
# The kit's overhead: the same trivial handler behind the full kit stack vs a bare axum router,
# same process, same load tool (wrk), same connections. Then `telar up` time-to-ready and idle RSS.
set -euo pipefail
quick="${1:-}"
duration=8s; warmup=2s; runs=5
if [ "$quick" = "--quick" ]; then duration=4s; warmup=1s; runs=1; fi

if ! command -v wrk >/dev/null; then
  echo "[bench] installing wrk" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get install -y -qq wrk >/dev/null || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >/dev/null; }
fi
echo "[bench] building release binaries" >&2
cargo build --release -q -p telar-bench-kit -p telar

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# Keep stdin open through a fifo so the server lives until we close it.
mkfifo "$work/stdin"
./target/release/telar-bench-kit < "$work/stdin" > /dev/null 2> "$work/urls" &
server=$!
exec 7> "$work/stdin"
for _ in $(seq 1 100); do grep -q kit= "$work/urls" 2>/dev/null && break; sleep 0.05; done
bare=$(grep -o 'bare=[^ ]*' "$work/urls" | cut -d= -f2)
kit=$(grep -o 'kit=[^ ]*' "$work/urls" | cut -d= -f2)

to_ms() { # wrk latency like 120.5us / 1.2ms / 1.1s
  awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000 } else print v }'
}
measure() { # url -> "rps p50ms p99ms"
  local out
  out=$(wrk -t1 -c32 -d"$duration" --latency "$1")
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(to_ms "$(echo "$out" | awk '$1=="50%" {print $2}')")
  p99=$(to_ms "$(echo "$out" | awk '$1=="99%" {print $2}')")
  echo "$rps $p50 $p99"
}

wrk -t1 -c32 -d"$warmup" "$bare" > /dev/null
wrk -t1 -c32 -d"$warmup" "$kit" > /dev/null
# Interleaved runs (bare, kit, bare, kit, ...) so machine noise hits both alike; the result is
# the median of the per-run ratios, with the median throughput and latencies of each side.
: > "$work/runs"
for run in $(seq 1 "$runs"); do
  b=$(measure "$bare"); k=$(measure "$kit")
  echo "[bench] run $run: bare $b | kit $k   (req/s p50_ms p99_ms)" >&2
  echo "$b $k" >> "$work/runs"
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
bare_rps=$(awk '{print $1}' "$work/runs" | median); kit_rps=$(awk '{print $4}' "$work/runs" | median)
bare_p50=$(awk '{print $2}' "$work/runs" | median); kit_p50=$(awk '{print $5}' "$work/runs" | median)
bare_p99=$(awk '{print $3}' "$work/runs" | median); kit_p99=$(awk '{print $6}' "$work/runs" | median)
ratio=$(awk '{printf "%.4f\n", $4/$1}' "$work/runs" | median)
exec 7>&-
wait "$server" 2>/dev/null || true

# telar up: wall time from exec to the ready table, fresh data dir (migrations included), and RSS.
ready_times=()
for _ in $(seq 1 "$runs"); do
  data=$(mktemp -d)
  start=$(date +%s%N)
  TELAR_DATABASE__SQLITE__DIR="$data" TELAR_SERVICES__HUB_SIM__PORT=0 ./target/release/telar up > /dev/null 2> "$work/up.err" &
  up=$!
  for _ in $(seq 1 400); do grep -q 'ready in' "$work/up.err" 2>/dev/null && break; sleep 0.005; done
  end=$(date +%s%N)
  ready_times+=($(( (end - start) / 1000000 )))
  sleep 1
  rss_kb=$(awk '/VmRSS/ {print $2}' /proc/$up/status)
  kill -TERM $up; wait $up 2>/dev/null || true
  rm -rf "$data"
done
ready_ms=$(printf '%s\n' "${ready_times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')

echo "kit:   ${kit_rps} req/s  p50 ${kit_p50} ms  p99 ${kit_p99} ms  (medians of ${runs} runs, wrk -t1 -c32 -d${duration})"
echo "bare:  ${bare_rps} req/s  p50 ${bare_p50} ms  p99 ${bare_p99} ms"
echo "kit/bare throughput: median per-run ratio ${ratio}"
echo "telar up: ready in ${ready_ms} ms (median of ${runs}, exec to table)  idle RSS $((rss_kb / 1024)) MiB (${rss_kb} kB)"
echo "RESULT name=kit value=${kit_rps} reference=${bare_rps} ratio=${ratio} unit=req/s"
