#!/usr/bin/env bash
# Kafka soak under combined faults: scripts/soak/kafka/run.sh [MINUTES]   (MINUTES of load, default 20)
#
# What it does: starts a tansu broker (sqlite storage, so it survives SIGKILL) on
# 127.0.0.1:$KSOAK_BROKER_PORT, creates the topics ksoak.call and ksoak.crm
# (KSOAK_PARTITIONS each), runs callrelay with [kafka] topic "ksoak.{category}" and the
# Voip24h (socket.io 4) and SPRecord (SSE) stand-ins from tests/peers as sources (driven
# by ../peers.py: ~40 events/s, each peer killed and restarted every 60-120 s), then for
# MINUTES:
#   - load.py:      48 workers post per-call sequences to all five vendors (~150
#                   webhooks/s); each step is retried until 200 (120 s at most) and every
#                   attempt is logged to sent.jsonl;
#   - supervise.py: owns the broker and the relay and, from 20 s in until 60 s before the
#                   end, injects a fault every 15-45 s: relay SIGKILL/SIGTERM + restart,
#                   broker down 10-90 s (SIGKILL only: tansu 0.6's sqlite storage can panic
#                   after a SIGTERM under produce load) and restarted on the same storage,
#                   SIGHUP alternating two configs that differ in [kafka.options], SIGHUP
#                   with no change, SIGHUP with an invalid file, SIGSTOP/SIGCONT 2-8 s, and
#                   overlaps of those (timeline.log has every action);
# then stops the load (calls under way finish), waits for the faults to end and the
# relay's /status sinks.kafka lag to reach 0 (at most KSOAK_DRAIN_S), stops everything it
# started, reads the broker's sqlite storage directly (analyze.py; a Kafka consumer hung
# on big partitions of tansu 0.6) and prints a summary table.
# Exit 1 on any loss (answered 200, in no topic), duplicate ce_id, per-key order
# violation, relay panic or relay death no fault caused; exit 2 on a harness problem
# (missing tool, port in use, broker or relay not starting, tansu panicked, ...).
#
# Needs: tansu ($TANSU, else `tansu` on PATH, else ~/.cargo/bin/tansu; install it with
# `cargo install tansu --locked --features dynostore,libsql`), python3 (3.8+) with
# `aiohttp` (installed with `python3 -m pip install aiohttp` if missing — the script says
# when it does), node (and npm the first time: tests/peers/*/setup.sh install the peers'
# node_modules), curl, ss (iproute2), setsid (util-linux).
# Takes: MINUTES + usually under a minute (the load's last calls, the Kafka lag, the
# analysis: ~5 s per 100,000 records): `run.sh 8` took 8 min 14 s. Bounded waits: 180 s
# for the load's calls, 240 s for the last fault, KSOAK_DRAIN_S for the lag.
#
# Env (all optional):
#   CALLRELAY_BIN       relay binary; unset: target/release/callrelay, built with
#                       `cargo build --release --bin callrelay` only if missing
#   TANSU               tansu binary (see Needs)
#   KSOAK_DIR (or SOAK_DIR) work dir (configs, journal, broker storage, logs, sent.jsonl,
#                       timeline.log, kafka.jsonl); must not hold a previous run; default a
#                       new mktemp dir, kept afterwards
#   KSOAK_PORT          relay port (default 47730); the broker listens on KSOAK_PORT+1, the
#                       Voip24h peer on KSOAK_PORT+2, the SPRecord peer on KSOAK_PORT+3, or
#                       KSOAK_BROKER_PORT / KSOAK_VOIP24H_PORT / KSOAK_SPRECORD_PORT
#   KSOAK_RATE (150)  KSOAK_WORKERS (48)  KSOAK_PARTITIONS (3)  KSOAK_DRAIN_S (300)
#   KSOAK_FAULT_GAP_MIN (15)  KSOAK_FAULT_GAP_MAX (45)  KSOAK_SEED (faults' random seed)
# Everything listens on 127.0.0.1 only. Ctrl-C stops every process it started.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
MINUTES=${1:-20}
die() { echo "ksoak: $*" >&2; exit 2; }
[[ $MINUTES =~ ^[0-9]+$ ]] && [ "$MINUTES" -ge 2 ] || die "usage: $0 [MINUTES >= 2]"
DUR=$((MINUTES * 60))
FAULT_DELAY=20
FAULT_FOR=$((DUR - FAULT_DELAY - 60))
[ "$FAULT_FOR" -ge 0 ] || FAULT_FOR=0

KSOAK_PORT=${KSOAK_PORT:-47730}
KSOAK_BROKER_PORT=${KSOAK_BROKER_PORT:-$((KSOAK_PORT + 1))}
KSOAK_VOIP24H_PORT=${KSOAK_VOIP24H_PORT:-$((KSOAK_PORT + 2))}
KSOAK_SPRECORD_PORT=${KSOAK_SPRECORD_PORT:-$((KSOAK_PORT + 3))}
RATE=${KSOAK_RATE:-150}
DRAIN_S=${KSOAK_DRAIN_S:-300}
LOAD_FINISH_S=180      # calls under way finish (a step retries for up to 120 s)
CALM_WAIT_S=240        # the last fault may still run (broker down up to 90 s, overlaps)

# ---- tools --------------------------------------------------------------------------
for tool in node curl ss python3 setsid; do
  command -v "$tool" >/dev/null 2>&1 || die "needs $tool on PATH"
done
python3 -c 'import sys; sys.exit(sys.version_info < (3, 8))' || die "needs python3 >= 3.8"
if ! python3 -c 'import aiohttp' 2>/dev/null; then
  echo "ksoak: python3 lacks aiohttp: installing it with pip (python3 -m pip install aiohttp)"
  python3 -m pip install --quiet aiohttp || die "pip install aiohttp failed"
fi
python3 -c 'import sqlite3' 2>/dev/null || die "python3 lacks the sqlite3 module (analyze.py reads tansu's storage with it)"
if [ -n "${TANSU:-}" ]; then
  TANSU_BIN=$TANSU
elif command -v tansu >/dev/null 2>&1; then
  TANSU_BIN=$(command -v tansu)
else
  TANSU_BIN=$HOME/.cargo/bin/tansu
fi
[ -x "$TANSU_BIN" ] || die "tansu (the Kafka-compatible broker) is not installed: run \`cargo install tansu --locked --features dynostore,libsql\` (scripts/test.sh does it), or point \$TANSU at the binary (looked at \$TANSU, PATH, $HOME/.cargo/bin/tansu)"
# shellcheck source=scripts/soak/common.sh
. "$HERE/../common.sh"
need_peers_and_relay ksoak
CALLRELAY_BIN=$(cd "$(dirname "$CALLRELAY_BIN")" && pwd)/$(basename "$CALLRELAY_BIN")
TANSU_BIN=$(cd "$(dirname "$TANSU_BIN")" && pwd)/$(basename "$TANSU_BIN")

for port in "$KSOAK_PORT" "$KSOAK_BROKER_PORT" "$KSOAK_VOIP24H_PORT" "$KSOAK_SPRECORD_PORT"; do
  [[ $port =~ ^[0-9]+$ ]] || die "bad port: $port"
  if ss -Hltn "( sport = :$port )" | grep -q .; then die "port $port is already in use"; fi
done

# ---- work dir and configs -----------------------------------------------------------
KSOAK_DIR=${KSOAK_DIR:-${SOAK_DIR:-}}
if [ -z "$KSOAK_DIR" ]; then
  KSOAK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/callrelay-ksoak.XXXXXX")
else
  mkdir -p "$KSOAK_DIR"
  if [ -e "$KSOAK_DIR/sent.jsonl" ] || [ -e "$KSOAK_DIR/relay" ] || [ -e "$KSOAK_DIR/tansu" ]; then
    die "KSOAK_DIR=$KSOAK_DIR holds a previous run (sent.jsonl, relay/ or tansu/); give a fresh one"
  fi
fi
KSOAK_DIR=$(cd "$KSOAK_DIR" && pwd)
case $KSOAK_DIR in *'"'* | *\\*) die "KSOAK_DIR may not contain \" or \\" ;; esac
mkdir -p "$KSOAK_DIR/relay" "$KSOAK_DIR/tansu"
cd "$KSOAK_DIR"

config() { # config a|b|invalid: the relay config; a and b differ in [kafka.options]
  cat <<EOF
# Kafka soak config $1 (written by scripts/soak/kafka/run.sh)
[server]
listen = "127.0.0.1:$KSOAK_PORT"
max_body = "64KiB"

[journal]
path = "$KSOAK_DIR/relay/data"
retention = "3h"
max_size = "2GiB"

[dedup]
window = "2h"

[websocket]
path = "/ws"
tokens = []
max_clients = 100
client_queue = 1024

[kafka]
brokers = "127.0.0.1:$KSOAK_BROKER_PORT"
topic = "ksoak.{category}"
create_topics = true
[kafka.options]
EOF
  case $1 in
    a) echo '"linger.ms" = "5"' ;;
    b) printf '%s\n' '"linger.ms" = "20"' '"batch.num.messages" = "5000"' ;;
    invalid) echo '"acks" = "1"' ;;   # callrelay refuses to weaken acks=all
  esac
  cat <<EOF

[[webhook]]
vendor = "caresoft"
account = "demo"
secret = "demo-caresoft-secret"

[[webhook]]
vendor = "tel4vn"
account = "demo"
api_key = "demo-tel4vn-key"

[[webhook]]
vendor = "sprecord"
account = "demo"
token = "demo-sprecord-token"
verification_reply = "plain"

[[webhook]]
vendor = "voipex"
account = "demo"
username = "demo"
password = "demo-voipex-password"

[[webhook]]
vendor = "voip24h"
account = "demo"
token = "demo-voip24h-token"

[[voip24h]]
account = "main"
url = "http://127.0.0.1:$KSOAK_VOIP24H_PORT"
key = "leak-key"
secret = "s3cret"
engine_io = "4"
sign = "key"
hello_interval = "10s"

[[sprecord]]
account = "office"
url = "http://127.0.0.1:$KSOAK_SPRECORD_PORT"
streams = 2
EOF
}
for v in a b invalid; do config "$v" > "cfg_$v.toml"; done
for v in a b; do
  "$CALLRELAY_BIN" check --config "cfg_$v.toml" > "check-$v.log" 2>&1 \
    || { cat "check-$v.log" >&2; die "callrelay check refuses cfg_$v.toml"; }
done
if "$CALLRELAY_BIN" check --config cfg_invalid.toml > check-invalid.log 2>&1; then
  die "callrelay check accepts cfg_invalid.toml"
fi
echo "ksoak: configs checked (cfg_a, cfg_b pass; cfg_invalid refused: $(head -1 check-invalid.log))"
echo idle > phase

export KSOAK_DIR KSOAK_PORT KSOAK_BROKER_PORT CALLRELAY_BIN TANSU_BIN
export KSOAK_TOPICS=ksoak.call,ksoak.crm KSOAK_PARTITIONS=${KSOAK_PARTITIONS:-3}
export KSOAK_RUN=${KSOAK_RUN:-k$(date +%s)}
# ../peers.py speaks SOAK_*
export SOAK_DIR=$KSOAK_DIR SOAK_REPO=$REPO SOAK_VOIP24H_PORT=$KSOAK_VOIP24H_PORT SOAK_SPRECORD_PORT=$KSOAK_SPRECORD_PORT

# ---- processes: each in its own session/process group, stopped by its PID ------------
PROCS_DIR=$KSOAK_DIR
orphan_kill() { # orphan_kill PIDFILE BINARY: SIGKILL a relay/broker left by a killed supervisor
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 0
  if tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "$2"; then
    echo "ksoak: killing left-over $2 (pid $pid)" >&2
    kill -CONT "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
  fi
}
# shellcheck disable=SC2329  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$NAP" ] && kill "$NAP" 2>/dev/null
  local name
  for name in load supervise peers; do
    if [ -n "${PID[$name]:-}" ]; then
      echo "ksoak: stopping $name (pid ${PID[$name]})" >&2
      stop "$name" 60
    fi
  done
  orphan_kill "$KSOAK_DIR/relay.pid" "$CALLRELAY_BIN"
  orphan_kill "$KSOAK_DIR/tansu.pid" "$TANSU_BIN"
  [ "$rc" -eq 0 ] || echo "ksoak: work dir $KSOAK_DIR" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "ksoak: interrupted" >&2; exit 130' INT
trap 'echo "ksoak: terminated" >&2; exit 143' TERM

echo "ksoak: KSOAK_DIR=$KSOAK_DIR relay=127.0.0.1:$KSOAK_PORT broker=:$KSOAK_BROKER_PORT voip24h=:$KSOAK_VOIP24H_PORT sprecord=:$KSOAK_SPRECORD_PORT"
echo "ksoak: $MINUTES min load (${RATE}/s), faults from ${FAULT_DELAY}s for ${FAULT_FOR}s; relay $CALLRELAY_BIN; tansu $TANSU_BIN"
T_START=$(date +%s)

start peers python3 "$HERE/../peers.py"
start supervise python3 "$HERE/supervise.py" "$FAULT_DELAY" "$FAULT_FOR"
for ((i = 0; i < 600; i++)); do
  [ -e supervisor.ready ] && break
  alive supervise || { tail -5 supervise.log >&2; tail -20 relay/relay.log >&2 || true; die "the broker or the relay did not start (supervise.log, tansu/tansu.log, relay/relay.log)"; }
  nap 0.1
done
[ -e supervisor.ready ] || die "the broker and the relay were not up after 60 s"
echo "ksoak: broker and relay up ($(grep -c 'TOPIC create' timeline.log) topics created)"
status() { curl -s -m 2 "http://127.0.0.1:$KSOAK_PORT/status"; }
kafka_state() { # "LAST_SEQ LAG IN_FLIGHT READY" from /status, or "? ? ? ?"
  status | python3 -c 'import sys, json
try:
  s = json.load(sys.stdin); k = s["sinks"]["kafka"]
  print(s["journal"]["last_seq"], k.get("lag"), k.get("in_flight"), k.get("ready"))
except Exception: print("? ? ? ?")'
}

# ---- load + faults ------------------------------------------------------------------
echo load > phase
echo "ksoak: $(date +%H:%M:%S) load for $MINUTES min"
start load python3 "$HERE/load.py" "$DUR" "$RATE"
END=$(($(date +%s) + DUR)); NEXT_NOTE=$(($(date +%s) + 60))
while [ "$(date +%s)" -lt "$END" ]; do
  nap 5
  alive supervise || die "supervise.py exited early (supervise.log)"
  if [ "$(date +%s)" -ge "$NEXT_NOTE" ]; then
    NEXT_NOTE=$((NEXT_NOTE + 60))
    read -r last lag infl ready < <(kafka_state)
    echo "ksoak: $(date +%H:%M:%S) journal last_seq $last, kafka lag $lag (in flight $infl, ready $ready), attempts $(wc -l < sent.jsonl), faults $(grep -c ' begin$' timeline.log || true), last: $(tail -1 timeline.log | cut -c12-)"
  fi
done

# ---- drain --------------------------------------------------------------------------
echo drain > phase
echo "ksoak: $(date +%H:%M:%S) load over: waiting for calls under way, the last fault, then a Kafka lag of 0"
for ((i = 0; i < LOAD_FINISH_S; i++)); do alive load || break; nap 1; done
alive load && echo "ksoak: load.py still busy after ${LOAD_FINISH_S}s: stopping it" >&2
stop load 5
echo "ksoak: load: $(grep FINAL load.log | tail -1)"
for ((i = 0; i < CALM_WAIT_S; i++)); do [ -e supervisor.calm ] && break; nap 1; done
[ -e supervisor.calm ] || die "the faults did not end within ${CALM_WAIT_S}s of the load (timeline.log)"
LAG_FLAG=--lag-not-drained; zeros=0
for ((i = 0; i < DRAIN_S; i++)); do
  read -r last lag infl ready < <(kafka_state)
  if [ "$lag" = 0 ] && [ "$infl" = 0 ]; then zeros=$((zeros + 1)); else zeros=0; fi
  if [ "$zeros" -ge 3 ]; then LAG_FLAG=""; break; fi
  nap 1
done
if [ -n "$LAG_FLAG" ]; then
  echo "ksoak: the Kafka lag did not reach 0 within ${DRAIN_S}s (last_seq $last, lag $lag, in flight $infl, ready $ready)" >&2
else
  echo "ksoak: $(date +%H:%M:%S) Kafka lag 0 (journal last_seq $last) after ${i}s"
fi

# ---- stop, analyse ------------------------------------------------------------------
echo done > phase
stop supervise 60     # stops the relay (SIGTERM) and the broker (SIGKILL)
stop peers 10
orphan_kill "$KSOAK_DIR/relay.pid" "$CALLRELAY_BIN"
orphan_kill "$KSOAK_DIR/tansu.pid" "$TANSU_BIN"
echo "ksoak: $(date +%H:%M:%S) stopped after $(( $(date +%s) - T_START ))s; peers: $(tail -1 peers.log)"
echo "ksoak: analysing (sent.jsonl against tansu/tansu.db; every record also to kafka.jsonl)"
set +e
python3 "$HERE/analyze.py" "$KSOAK_DIR" --dump $LAG_FLAG
rc=$?
set -e
echo "ksoak: took $(( $(date +%s) - T_START ))s; work dir $KSOAK_DIR (timeline.log, sent.jsonl, relay/relay.log, tansu/tansu.log, kafka.jsonl, analysis above)"
exit "$rc"
