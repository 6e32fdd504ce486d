#!/usr/bin/env bash
# How long after a broker comes back a relay that started during the outage
# delivers its first event: for each binary and run, starts the relay with
# [kafka] pointing at a port where nothing listens yet, answers one webhook,
# waits OUTAGE seconds, starts tansu there and times the first delivery
# (`callrelay_events_published_total{sink="kafka"}` leaving 0). The binaries'
# runs go in parallel, each against its own broker, so they share the
# machine's noise.
#
#   scripts/perf/kafka_outage_at_start.sh /tmp/callrelay-before target/release/callrelay
#
# Env: RUNS (parallel runs per binary, default 3), OUTAGE (seconds, default
# 300), PORT (first port, default 21000; each run takes two. Keep it below
# the kernel's ephemeral range, 32768 and up on Linux: librdkafka's retries
# towards a closed port there can connect to themselves, and tansu then
# cannot bind it). Needs tansu ($TANSU, else on PATH, else ~/.cargo/bin/tansu),
# curl. Not part of the test suite; docs/kafka.md quotes its output.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BINARY [BINARY…]" >&2; exit 2; }
runs="${RUNS:-3}"
outage="${OUTAGE:-300}"
port="${PORT:-21000}"
tansu="${TANSU:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}"
[ -x "$tansu" ] || { echo "tansu not found (scripts/test.sh installs it, or set TANSU)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; wait; rm -rf "$work"' EXIT

published() {
  curl -sf "127.0.0.1:$1/metrics" | awk '/^callrelay_events_published_total\{sink="kafka"\}/ {print $2}'
}

one_run() {
  local bin="$1" kafka_port="$2" dir="$3" http_port=$(($2 + 1))
  mkdir -p "$dir"
  cat >"$dir/relay.toml" <<TOML
[server]
listen = "127.0.0.1:$http_port"
[journal]
path = "$dir/journal"
[kafka]
brokers = "127.0.0.1:$kafka_port"
create_topics = true
[[webhook]]
vendor = "tel4vn"
account = "bench"
api_key = "bench-key"
TOML
  "$bin" run --config "$dir/relay.toml" --log-level warn >"$dir/relay.log" 2>&1 &
  local relay=$!
  until curl -sf "127.0.0.1:$http_port/healthz" >/dev/null; do sleep 0.1; done
  local answer
  answer=$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$http_port/hooks/tel4vn/bench" \
    -H 'Authorization: Bearer bench-key' -H 'Content-Type: application/json' \
    --data-binary '{"call_id":"c1","direction":"outbound","from_number":"1","to_number":"2","state":"hangup"}')
  sleep "$outage"
  local start
  start=$(date +%s.%N)
  (cd "$dir" && RUST_LOG=warn exec "$tansu" broker --listener-url "tcp://127.0.0.1:$kafka_port" \
    --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine memory:// >tansu.log 2>&1) &
  local broker=$!
  local took="no delivery within 120 s"
  while [ "$(echo "$(date +%s.%N) - $start < 120" | bc)" = 1 ]; do
    if [ "$(published "$http_port")" != "0" ] && [ -n "$(published "$http_port")" ]; then
      took="$(echo "$(date +%s.%N) - $start" | bc) s"
      break
    fi
    sleep 0.1
  done
  echo "$bin run $(basename "$dir"): webhook $answer, first delivery $took after the broker started (outage ${outage}s)"
  kill "$relay" "$broker" 2>/dev/null || true
  wait "$relay" "$broker" 2>/dev/null || true
}

n=0
for bin in "$@"; do
  for run in $(seq "$runs"); do
    one_run "$bin" $((port + 2 * n)) "$work/$n" &
    n=$((n + 1))
  done
done
wait
