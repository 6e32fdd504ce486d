#!/usr/bin/env bash
# How long a start of two or more `callrelay` binaries takes on one full
# journal: fills a journal to the default max_size (1 GiB of events) once with
# the webhook_load bench's load generator, then, round after round and binary
# after binary, starts each on it and reads `journal open`'s took_ms: after a
# clean stop (the file read into the page cache first, as a running relay
# leaves it), and after a SIGKILL (redb then checks the whole file).
#
#   scripts/perf/journal_starts.sh /tmp/callrelay-before target/release/callrelay
#
# Env: ROUNDS (default 5), KILL_ROUNDS (default 2), PORT (default 18097),
# FILL_SECS (default 60), FILL_RATE (default 30000). Needs python3 and curl.
# Not part of the test suite; docs/PERFORMANCE.md quotes its output.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/perf/lib.sh
[ $# -ge 1 ] || { echo "usage: $0 BINARY [BINARY…]" >&2; exit 2; }
rounds="${ROUNDS:-5}"
kill_rounds="${KILL_ROUNDS:-2}"
port="${PORT:-18097}"

bench="$(webhook_load_binary)"
make_work_dir
write_bench_config "$work" "$port"

# start BIN LOG: runs BIN on the journal until it listens.
start() {
  "$1" run --config "$work/relay.toml" --log-format json >"$2" 2>&1 &
  relay=$!
  until grep -q '"listening"' "$2" 2>/dev/null; do
    kill -0 "$relay" 2>/dev/null || { cat "$2" >&2; exit 1; }
    sleep 0.01
  done
}

stop() {
  kill -"${1:-TERM}" "$relay"
  wait "$relay" 2>/dev/null || true
  relay=""
}

took_ms() {
  grep '"journal open"' "$1" | python3 -c 'import json, sys; print(json.loads(sys.stdin.read())["took_ms"])'
}

echo "== filling the journal"
start "$1" "$work/fill.log"
"$bench" --drive "http://127.0.0.1:$port/hooks/tel4vn/bench" --rate "${FILL_RATE:-30000}" \
  --secs "${FILL_SECS:-60}" --conns 128 | tail -1
stop
ls -l "$work/journal/journal.redb"

for round in $(seq 1 "$rounds"); do
  for bin in "$@"; do
    cat "$work/journal/journal.redb" >/dev/null
    start "$bin" "$work/start.log"
    stop
    echo "clean stop, round $round, $bin: journal open $(took_ms "$work/start.log") ms"
  done
done

for round in $(seq 1 "$kill_rounds"); do
  for bin in "$@"; do
    start "$bin" "$work/before-kill.log"
    curl -fsS -o /dev/null "http://127.0.0.1:$port/hooks/tel4vn/bench" \
      -H 'Authorization: Bearer bench-key' -H 'Content-Type: application/json' \
      --data-binary "{\"call_id\":\"kill-$round\",\"state\":\"hangup\"}"
    stop KILL
    cat "$work/journal/journal.redb" >/dev/null
    start "$bin" "$work/start.log"
    stop
    echo "after SIGKILL, round $round, $bin: journal open $(took_ms "$work/start.log") ms"
  done
done
