#!/usr/bin/env bash
# Profiles the webhook ingest path at load: runs the release `callrelay` binary
# (one Tel4vn [[webhook]], journal in a temp dir) under a profiler, drives it
# with the webhook_load bench's load generator (`--drive`), stops it with
# SIGTERM (a clean drain), and prints the top inclusive costs.
#
#   scripts/perf/profile_ingest.sh callgrind   # valgrind --tool=callgrind (default)
#   scripts/perf/profile_ingest.sh perf        # perf record -e cpu-clock -g (sampling)
#
# Env: RATE (offered events/s, default 300 under callgrind, 5000 under perf),
# SECS (default 20), PORT (default 18099), OUT (default target/perf).
# Used for docs/PERFORMANCE.md ("Where time goes"). Not part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/perf/lib.sh

tool="${1:-callgrind}"
port="${PORT:-18099}"
secs="${SECS:-20}"
out="${OUT:-target/perf}"
case "$tool" in
  callgrind) rate="${RATE:-300}" ;;
  perf) rate="${RATE:-5000}" ;;
  *) echo "usage: $0 [callgrind|perf]" >&2; exit 2 ;;
esac
mkdir -p "$out"

cargo build --release --bin callrelay
bench="$(webhook_load_binary)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
write_bench_config "$work" "$port"

case "$tool" in
  callgrind)
    valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
      target/release/callrelay run --config "$work/relay.toml" --log-level warn &
    ;;
  perf)
    perf record -e cpu-clock -F 999 -g --call-graph dwarf,16384 -o "$out/perf.data" -- \
      target/release/callrelay run --config "$work/relay.toml" --log-level warn &
    ;;
esac
relay=$!

for _ in $(seq 1 600); do
  if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
"$bench" --drive "http://127.0.0.1:$port/hooks/tel4vn/bench" --rate "$rate" --secs "$secs"
curl -fsS "http://127.0.0.1:$port/status" | head -c 400; echo
# perf record runs the relay as its child; valgrind becomes it.
kill -TERM "$(pgrep -P "$relay" -x callrelay || echo "$relay")" 2>/dev/null || true
wait "$relay" || true

case "$tool" in
  callgrind)
    callgrind_annotate --inclusive=yes "$out/callgrind.out" 2>/dev/null | head -80
    echo "----- exclusive -----"
    callgrind_annotate "$out/callgrind.out" 2>/dev/null | head -60
    ;;
  perf)
    perf report -i "$out/perf.data" --no-children --sort symbol --stdio 2>/dev/null | grep -v '^$' | head -80
    ;;
esac
