#!/usr/bin/env bash
# Peak memory of the relay while its journal grows, for one or more builds
# side by side: each binary in turn gets a fresh journal (default max_size,
# 1 GiB), ROUNDS × EVENTS Tel4vn deliveries padded to PAD bytes, then a
# WebSocket replay of all of them; its RSS and peak RSS are read from /proc.
#
#   scripts/perf/journal_memory.sh /tmp/callrelay-before target/release/callrelay
#
# Env: EVENTS (default 10000), PAD (default 10000), ROUNDS (default 3),
# PORT (default 47760). Needs python3 with aiohttp and websockets
# (`python3 -m pip install aiohttp websockets`). Not part of the test
# suite; docs/PERFORMANCE.md quotes its output.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
events=${EVENTS:-10000} pad=${PAD:-10000} rounds=${ROUNDS:-3} port=${PORT:-47760}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$pid/status"; }
for bin in "$@"; do
  rm -rf "$work/data"
  cat >"$work/relay.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[journal]
path = "$work/data"
[[webhook]]
vendor = "tel4vn"
account = "t"
api_key = "k"
TOML
  "$bin" --config "$work/relay.toml" run >"$work/relay.log" 2>&1 &
  pid=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  for round in $(seq "$rounds"); do
    timing=$(python3 "$here/journal_memory.py" "$port" "$events" "$pad")
    echo "$bin round $round: $timing; RSS $(( $(kb VmRSS) / 1024 )) MiB, peak $(( $(kb VmHWM) / 1024 )) MiB, file $(( $(stat -c %s "$work/data/journal.redb") / 1048576 )) MiB"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
