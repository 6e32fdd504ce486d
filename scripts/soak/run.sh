#!/usr/bin/env bash
# Leak soak of the relay: scripts/soak/run.sh [MINUTES]   (MINUTES of load, default 20)
#
# What it does: runs callrelay on 127.0.0.1:$SOAK_PORT with the Voip24h (socket.io 4)
# and SPRecord (SSE) stand-ins from tests/peers as sources, checks the three configs
# (`callrelay check`: base.toml and config_b.toml must pass, invalid.toml must fail),
# samples a baseline, then for MINUTES drives it with
#   - hooks.py:  ~250 valid webhooks/s over 5 vendors (+5% retries) and ~8 refused/s
#                (401/400/413/404), plus raw sockets that abort or stall mid-body;
#   - ws.py:     50-200 WebSocket clients churning (replay, filters, stalled readers,
#                TCP aborts);
#   - peers.py:  events from both peers, each peer killed and restarted every 60-120 s;
#   - reload.sh: SIGHUP with config B / A / B / A / invalid ... every 60 s (30 s when
#                MINUTES < 10, so a short run still sees a refused reload);
# then stops the load (config A back, peers stay up and quiet), samples 90 s of idle,
# stops everything it started and prints a summary of samples.csv and the relay log.
# Exit 1 if, after idle, fds > baseline+5, threads > baseline+4, the ws clients gauge
# or the webhook body-bytes gauge is not 0, or the relay panicked or died.
#
# Needs: python3 (3.11+) with `websockets` and `aiohttp` (installed with
# `python3 -m pip install websockets aiohttp` if missing — the script says when it
# does), node (and npm the first time: tests/peers/*/setup.sh install the peers'
# node_modules), curl, ss (iproute2), setsid (util-linux).
# Takes: MINUTES + about 3.5 min (30 s baseline, up to ~70 s for the load to drain,
# 90 s idle, shutdown); the default 20 minutes of load takes ~24 min.
#
# Env (all optional):
#   CALLRELAY_BIN        relay binary; unset: target/release/callrelay, built with
#                        `cargo build --release --bin callrelay` only if missing
#   SOAK_DIR             work dir (configs, journal, logs, samples.csv); must not hold a
#                        previous run; default a new mktemp dir, kept afterwards
#   SOAK_PORT            relay port (default 47710)
#   SOAK_PEER_PORT_BASE  peers' ports: Voip24h on BASE, SPRecord on BASE+1 (default
#                        SOAK_PORT+10); or SOAK_VOIP24H_PORT / SOAK_SPRECORD_PORT
#   SOAK_HOOK_RATE (250)  SOAK_WS_MIN (50)  SOAK_WS_MAX (200)  SOAK_SAMPLE_S (10)
#   SOAK_IDLE_S (90)  SOAK_BASELINE_S (30)  SOAK_RELOAD_S (60; 30 if MINUTES < 10)
# Everything listens on 127.0.0.1 only. Ctrl-C stops every process it started.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
MINUTES=${1:-20}
die() { echo "soak: $*" >&2; exit 2; }
[[ $MINUTES =~ ^[0-9]+$ ]] && [ "$MINUTES" -ge 1 ] || die "usage: $0 [MINUTES >= 1]"
DUR=$((MINUTES * 60))

SOAK_PORT=${SOAK_PORT:-47710}
SOAK_PEER_PORT_BASE=${SOAK_PEER_PORT_BASE:-$((SOAK_PORT + 10))}
SOAK_VOIP24H_PORT=${SOAK_VOIP24H_PORT:-$SOAK_PEER_PORT_BASE}
SOAK_SPRECORD_PORT=${SOAK_SPRECORD_PORT:-$((SOAK_PEER_PORT_BASE + 1))}
HOOK_RATE=${SOAK_HOOK_RATE:-250}
WS_MIN=${SOAK_WS_MIN:-50}
WS_MAX=${SOAK_WS_MAX:-200}
SAMPLE_S=${SOAK_SAMPLE_S:-10}
IDLE_S=${SOAK_IDLE_S:-90}
BASELINE_S=${SOAK_BASELINE_S:-30}
if [ "$MINUTES" -lt 10 ]; then RELOAD_S=${SOAK_RELOAD_S:-30}; else RELOAD_S=${SOAK_RELOAD_S:-60}; fi
DRAIN_MAX_S=120   # hooks.py/ws.py finish their in-flight clients (stalls last up to ~65 s)

# ---- tools --------------------------------------------------------------------------
for tool in node curl ss python3 setsid awk; do
  command -v "$tool" >/dev/null 2>&1 || die "needs $tool on PATH"
done
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "needs python3 >= 3.11 (ws.py uses asyncio.timeout)"
if ! python3 -c 'import websockets, aiohttp' 2>/dev/null; then
  echo "soak: python3 lacks websockets/aiohttp: installing them with pip (python3 -m pip install websockets aiohttp)"
  python3 -m pip install --quiet websockets aiohttp || die "pip install websockets aiohttp failed"
fi
# shellcheck source=scripts/soak/common.sh
. "$HERE/common.sh"
need_peers_and_relay soak

for port in "$SOAK_PORT" "$SOAK_VOIP24H_PORT" "$SOAK_SPRECORD_PORT"; do
  [[ $port =~ ^[0-9]+$ ]] || die "bad port: $port"
  if ss -Hltn "( sport = :$port )" | grep -q .; then die "port $port is already in use"; fi
done

# ---- work dir and configs -----------------------------------------------------------
if [ -z "${SOAK_DIR:-}" ]; then
  SOAK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/callrelay-soak.XXXXXX")
else
  mkdir -p "$SOAK_DIR"
  if [ -e "$SOAK_DIR/samples.csv" ] || [ -e "$SOAK_DIR/data" ]; then
    die "SOAK_DIR=$SOAK_DIR holds a previous run (samples.csv or data/); give a fresh one"
  fi
fi
SOAK_DIR=$(cd "$SOAK_DIR" && pwd)
case $SOAK_DIR in *'|'* | *'&'* | *\\*) die "SOAK_DIR may not contain | & or \\" ;; esac
export SOAK_DIR SOAK_PORT SOAK_VOIP24H_PORT SOAK_SPRECORD_PORT
export SOAK_REPO=$REPO
cd "$SOAK_DIR"

for name in base config_b invalid; do
  sed -e "s|@SOAK_PORT@|$SOAK_PORT|g" -e "s|@SOAK_DIR@|$SOAK_DIR|g" \
      -e "s|@SOAK_VOIP24H_PORT@|$SOAK_VOIP24H_PORT|g" -e "s|@SOAK_SPRECORD_PORT@|$SOAK_SPRECORD_PORT|g" \
      "$HERE/$name.toml" > "$SOAK_DIR/$name.toml"
done
for name in base config_b; do
  "$CALLRELAY_BIN" check --config "$SOAK_DIR/$name.toml" > "check-$name.log" 2>&1 \
    || { cat "check-$name.log" >&2; die "callrelay check refuses $name.toml"; }
done
if "$CALLRELAY_BIN" check --config "$SOAK_DIR/invalid.toml" > check-invalid.log 2>&1; then
  die "callrelay check accepts invalid.toml"
fi
echo "soak: configs checked (base, config_b pass; invalid refused: $(head -1 check-invalid.log))"
cp base.toml relay.toml
echo baseline > phase

# ---- processes: each in its own session/process group, stopped by its PID ------------
PROCS_DIR=$SOAK_DIR
# shellcheck disable=SC2329  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$NAP" ] && kill "$NAP" 2>/dev/null
  local name
  for name in hooks ws reload sampler relay peers; do
    if [ -n "${PID[$name]:-}" ]; then
      echo "soak: stopping $name (pid ${PID[$name]})" >&2
      stop "$name" 10
    fi
  done
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "soak: interrupted" >&2; exit 130' INT
trap 'echo "soak: terminated" >&2; exit 143' TERM

echo "soak: SOAK_DIR=$SOAK_DIR relay=127.0.0.1:$SOAK_PORT voip24h=:$SOAK_VOIP24H_PORT sprecord=:$SOAK_SPRECORD_PORT"
echo "soak: $MINUTES min load (hooks ${HOOK_RATE}/s, ws $WS_MIN-$WS_MAX, reload every ${RELOAD_S}s), ${IDLE_S}s idle; binary $CALLRELAY_BIN"

start peers python3 "$HERE/peers.py"
start relay "$CALLRELAY_BIN" run --config "$SOAK_DIR/relay.toml" --log-format json
RELAY=${PID[relay]}
status() { curl -s -m 2 "http://127.0.0.1:$SOAK_PORT/status"; }
connected() { # sources connected / sources listed, from /status
  status | python3 -c 'import sys, json
try:
  s = json.load(sys.stdin).get("sources", [])
  print(sum(1 for x in s if x.get("state") == "connected"), len(s))
except Exception: print(0, -1)'
}
for ((i = 0; i < 300; i++)); do
  alive relay || { tail -20 relay.log >&2; die "the relay exited at start"; }
  read -r up total < <(connected)
  [ "$total" -gt 0 ] && [ "$up" -eq "$total" ] && break
  sleep 0.1
done
[ "$total" -ge 0 ] || die "the relay's /status does not answer on port $SOAK_PORT"
echo "soak: relay up (pid $RELAY), sources connected $up/$total"
SOAK_T0=$(date +%s); export SOAK_T0
start sampler "$HERE/sampler.sh" "$RELAY" "$SAMPLE_S" "$SOAK_DIR/samples.csv"
nap "$BASELINE_S"

# ---- load ---------------------------------------------------------------------------
echo load > phase
echo "soak: $(date +%H:%M:%S) load for $MINUTES min"
start hooks python3 "$HERE/hooks.py" "$DUR" "$HOOK_RATE"
start ws python3 "$HERE/ws.py" "$DUR" "$WS_MIN" "$WS_MAX"
start reload "$HERE/reload.sh" "$RELAY" "$DUR" "$RELOAD_S"
END=$(($(date +%s) + DUR)); NEXT_NOTE=$(($(date +%s) + 60))
while [ "$(date +%s)" -lt "$END" ] && alive relay; do
  nap 5
  if [ "$(date +%s)" -ge "$NEXT_NOTE" ]; then
    NEXT_NOTE=$((NEXT_NOTE + 60))
    echo "soak: $(date +%H:%M:%S) $(tail -1 samples.csv | cut -d, -f4,6,7,13,16 | awk -F, '{printf "rss %.0f MB, fds %s, threads %s, ws clients %s, sources up %s", $1/1024, $2, $3, $4, $5}')"
  fi
done

# ---- drain, idle --------------------------------------------------------------------
echo drain > phase
echo "soak: $(date +%H:%M:%S) load over: config A back, waiting for the load's clients to finish"
stop reload 10
for ((i = 0; i < DRAIN_MAX_S; i++)); do
  alive hooks || alive ws || break
  nap 1
done
stop hooks 5
stop ws 5
echo idle > phase
echo "soak: $(date +%H:%M:%S) idle for ${IDLE_S}s"
nap "$IDLE_S"

# ---- stop, summarise ----------------------------------------------------------------
RELAY_DIED=""
alive relay || RELAY_DIED=--relay-died
stop sampler 5
SOAK_SAMPLE_ONCE=1 "$HERE/sampler.sh" "$RELAY" 0 "$SOAK_DIR/samples.csv"   # the row "after idle"
echo "done" > phase
stop relay 30
stop peers 10
echo "soak: $(date +%H:%M:%S) stopped; work dir $SOAK_DIR"
echo "hooks: $(grep FINAL hooks.log | tail -1)"
echo "ws:    $(grep FINAL ws.log | tail -1)"
echo "peers: $(tail -1 peers.log)"
echo "== callrelay soak summary ($MINUTES min load, ${IDLE_S}s idle, sample every ${SAMPLE_S}s)"
set +e
python3 "$HERE/summarize.py" "$SOAK_DIR" $RELAY_DIED
rc=$?
set -e
exit "$rc"
