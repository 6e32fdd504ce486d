#!/usr/bin/env bash
# Side-by-side webhook ingest of two or more `callrelay` binaries (e.g. before
# and after a change): each round starts each binary in turn as its own
# process (one Tel4vn [[webhook]], a fresh journal), drives it with the
# webhook_load bench's load generator, and stops it; rounds alternate the
# binaries so that a noisy neighbour hurts them alike.
#
#   scripts/perf/compare_binaries.sh /tmp/callrelay-before target/release/callrelay
#
# Env: ROUNDS (default 3), SECS (default 5), CONNS (closed loop, default 64),
# RATE (also an open-loop run at this offered rate when set), PORT (default 18098).
# Not part of the test suite; docs/PERFORMANCE.md quotes its output.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/perf/lib.sh
[ $# -ge 1 ] || { echo "usage: $0 BINARY [BINARY…]" >&2; exit 2; }
rounds="${ROUNDS:-3}"
secs="${SECS:-5}"
conns="${CONNS:-64}"
port="${PORT:-18098}"

bench="$(webhook_load_binary)"

make_work_dir

run_one() {
  local bin="$1"
  rm -rf "$work/journal"
  write_bench_config "$work" "$port"
  "$bin" run --config "$work/relay.toml" --log-level warn &
  relay=$!
  for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  local url="http://127.0.0.1:$port/hooks/tel4vn/bench"
  printf '%s closed %s conns: ' "$bin" "$conns"
  "$bench" --drive "$url" --secs "$secs" --conns "$conns" | sed "s|^$url: ||"
  if [ -n "${RATE:-}" ]; then
    printf '%s open %s/s: ' "$bin" "$RATE"
    "$bench" --drive "$url" --secs "$secs" --rate "$RATE" | sed "s|^$url: ||"
  fi
  kill -TERM "$relay"
  wait "$relay" || true
  relay=""
}

for round in $(seq 1 "$rounds"); do
  echo "== round $round"
  for bin in "$@"; do run_one "$bin"; done
done
