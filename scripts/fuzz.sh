#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for a bounded time (default 15 s each).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Installs cargo-fuzz when missing (once, a few minutes). The toolchain is
# stable: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags, and
# `--sanitizer none` needs no nightly-only sanitizer runtime. Each target's
# corpus is seeded from the vendors' samples (tests/fixtures/vendors/), the
# repository's configs and, for the upstream parsers, fuzz/seeds/<target>/
# plus the SPRecord / Voip24h samples framed as their servers send them. A crash stops the script with a non-zero status; the
# input is in fuzz/artifacts/<target>/ — minimize it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz tmin --sanitizer none <target> <file>
# and keep it in fuzz/regressions/<target>/ (tests/fuzz_regressions.rs replays it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1

seconds="${1:-${CALLRELAY_FUZZ_SECONDS:-15}}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(webhook_caresoft webhook_tel4vn webhook_voipex webhook_voip24h webhook_sprecord config
    upstream_sse upstream_socketio websocket_query)
fi

CARGO_FUZZ_VERSION=0.13.2
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION (once)"
  # Built in a directory of its own, not in the relay's CARGO_TARGET_DIR.
  env -u CARGO_TARGET_DIR cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# Seeds: every sample in each input mode (see fuzz/src/lib.rs), every config.
seed() {
  local target=$1 vendor=$2 dir="fuzz/corpus/$1"
  mkdir -p "$dir"
  for sample in tests/fixtures/vendors/"$vendor"/*; do
    [ -f "$sample" ] || continue
    for mode in 0 1 3; do
      { printf "\\x0$mode"; cat "$sample"; } >"$dir/seed-$mode-$(basename "$sample")"
    done
    # Mode 2: Voip24h's GET takes the sample as a query; the others POST
    # the sample (on one line) behind the query line `event=missed`.
    if [ "$vendor" = voip24h ]; then
      { printf '\x02'; cat "$sample"; } >"$dir/seed-2-$(basename "$sample")"
    else
      { printf '\x02event=missed\n'; tr -d '\n' <"$sample"; } >"$dir/seed-2-$(basename "$sample")"
    fi
    # Mode 4: the head fuzzed (`CONTENT-TYPE \n QUERY \n BODY`): a JSON body
    # labelled windows-1251, and one behind a query that is not UTF-8.
    { printf '\x04application/json; charset=windows-1251\n\n'; cat "$sample"; } \
      >"$dir/seed-4-cp1251-$(basename "$sample")"
    { printf '\x04application/json\nevent=missed&x=%%FF\n'; cat "$sample"; } \
      >"$dir/seed-4-query-$(basename "$sample")"
  done
}
for v in caresoft tel4vn voipex voip24h sprecord; do seed "webhook_$v" "$v"; done
# Shapes no sample has: a Voip24h Cdr posted as a PHP form (mode 3: a form
# body), a Tel4vn CDR posted to `?event=cdr` carrying autocall fields.
printf '\x03state=Cdr&callid=1.2&cdr%%5Buniqueid%%5D=1.3&cdr%%5Bdst%%5D=130&cdr%%5Bbillsec%%5D=42' \
  >fuzz/corpus/webhook_voip24h/seed-3-cdr-form
printf '\x02event=cdr\n{"call_id":"c-1","state":"cdr","press_key":0,"customer_id":"9"}' \
  >fuzz/corpus/webhook_tel4vn/seed-2-event-cdr
mkdir -p fuzz/corpus/config
for f in relay.toml deploy/relay.toml; do
  [ -f "$f" ] && cp "$f" "fuzz/corpus/config/seed-$(echo "$f" | tr / _)"
done

# Upstream seeds (tests/fuzz_regressions.rs feeds the same ones to the harness).
# upstream_sse: each stream behind the header bytes of fuzz/src/lib.rs — real
# limit in one chunk, real limit in 1-byte chunks, a 256-byte limit in chunks
# of 7, 1 and 64 bytes. The SPRecord samples are framed as tests/sprecord.rs
# writes them (`id: N` then one `data: ` line) and as the better-sse peer does
# (`data:` per line of the JSON, then `id:N`).
mkdir -p fuzz/corpus/upstream_sse fuzz/corpus/upstream_socketio
sse_seed() {
  local name=$1 stream=$2 i=0
  for header in '\x00\x00' '\x00\x01\x01' '\x20\x03\x07\x01\x40'; do
    { printf "$header"; cat "$stream"; } >"fuzz/corpus/upstream_sse/seed-$i-$name"
    i=$((i + 1))
  done
}
for f in fuzz/seeds/upstream_sse/*; do sse_seed "$(basename "$f")" "$f"; done
n=0
framed=$(mktemp)
for sample in tests/fixtures/vendors/sprecord/*.json; do
  n=$((n + 1))
  { printf 'id: %d\ndata: ' "$n"; tr -d '\n' <"$sample"; printf '\n\n'; } >"$framed"
  sse_seed "rust-$(basename "$sample")" "$framed"
  { awk '{ print "data:" $0 }' "$sample"; printf 'id:%d\n\n' "$n"; } >"$framed"
  sse_seed "better-sse-$(basename "$sample")" "$framed"
done
rm -f "$framed"
# upstream_socketio: fuzz/seeds/upstream_socketio/ and each Voip24h JSON
# sample as a socket.io 2 `response` event.
cp fuzz/seeds/upstream_socketio/* fuzz/corpus/upstream_socketio/
for sample in tests/fixtures/vendors/voip24h/*.json; do
  { printf '42["response",'; tr -d '\n' <"$sample"; printf ']'; } \
    >"fuzz/corpus/upstream_socketio/seed-response-$(basename "$sample")"
done
# websocket_query: client connects as fuzz/src/lib.rs lays them out.
mkdir -p fuzz/corpus/websocket_query
cp fuzz/seeds/websocket_query/* fuzz/corpus/websocket_query/

echo "== building fuzz targets"
# Built once, then each binary is run directly: `cargo fuzz run` would rebuild
# per target (and see every edit made to the tree meanwhile). `-a` keeps
# debug assertions and overflow checks on in the optimized build: without it
# an overflow on a number from the input wraps silently here while the same
# input panics under `cargo test`.
cargo fuzz build --sanitizer none -O -a
bin_dir="${CARGO_TARGET_DIR:-fuzz/target}/$(rustc -vV | sed -n 's/^host: //p')/release"

mkdir -p fuzz/logs
stamp=$(mktemp)
failed=()
for target in "${targets[@]}"; do
  echo "== fuzz $target for ${seconds}s (log: fuzz/logs/$target.log)"
  mkdir -p "fuzz/artifacts/$target"
  # -timeout: one input over 10 s is a hang; -rss_limit_mb: a shared CI box.
  "$bin_dir/$target" "fuzz/corpus/$target" -artifact_prefix="fuzz/artifacts/$target/" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"fuzz/logs/$target.log" 2>&1 || true
  if ! grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^Done [0-9]+ runs' "fuzz/logs/$target.log"; then
    echo "!! $target did not run to the end" >&2
    failed+=("$target")
  fi
  new=$(find "fuzz/artifacts/$target" -type f -newer "$stamp" 2>/dev/null || true)
  if [ -n "$new" ]; then
    grep -E 'panicked|SUMMARY|ERROR' "fuzz/logs/$target.log" | head -5 >&2 || true
    echo "!! $target failed on: $new" >&2
    failed+=("$target")
  fi
done
rm -f "$stamp"
if [ ${#failed[@]} -gt 0 ]; then
  echo "!! fuzz: failures in ${failed[*]}" >&2
  exit 1
fi
echo "== fuzz: no failure in ${#targets[@]} targets x ${seconds}s"
