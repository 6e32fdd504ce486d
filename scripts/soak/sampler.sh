#!/usr/bin/env bash
# sampler.sh PID INTERVAL_S OUT.csv
# One CSV row per INTERVAL_S seconds while PID lives: the relay's RSS, peak RSS, fds and
# threads (/proc), journal file bytes on disk, /status (journal, dedup, ws clients,
# sources connected), /metrics gauges (ws clients, webhook body bytes), established TCP
# connections on the relay port, and the phase ($SOAK_DIR/phase, written by run.sh).
# Env: SOAK_DIR, SOAK_PORT (default 47710), SOAK_T0 (epoch s for elapsed_s; default now),
# SOAK_SAMPLE_ONCE=1 (write one row and exit).
set -u
PID=$1; IV=$2; OUT=$3
PORT=${SOAK_PORT:-47710}
[ -f "$OUT" ] || echo "time,elapsed_s,phase,rss_kb,hwm_kb,fds,threads,journal_file_bytes,journal_bytes,first_seq,last_seq,dedup_entries,ws_clients_status,ws_clients_gauge,body_bytes_gauge,sources_connected,tcp_est" > "$OUT"
T0=${SOAK_T0:-$(date +%s)}
SP=""; stop=""; trap 'stop=1' TERM INT
while [ -z "$stop" ] && kill -0 "$PID" 2>/dev/null; do
  RSS=$(awk '/^VmRSS/{print $2}' "/proc/$PID/status" 2>/dev/null); HWM=$(awk '/^VmHWM/{print $2}' "/proc/$PID/status" 2>/dev/null)
  THR=$(awk '/^Threads/{print $2}' "/proc/$PID/status" 2>/dev/null); FDS=$(find "/proc/$PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  FB=$(stat -c %s "$SOAK_DIR"/data/* 2>/dev/null | awk '{s+=$1}END{print s+0}')
  PH=$(cat "$SOAK_DIR/phase" 2>/dev/null)
  ST=$(curl -s -m 5 "http://127.0.0.1:$PORT/status")
  J=$(printf '%s' "$ST" | python3 -c 'import sys,json
try:
  d=json.load(sys.stdin); j=d["journal"]; w=d["sinks"]["websocket"]
  up=sum(1 for s in d.get("sources",[]) if s.get("state")=="connected")
  print(j.get("bytes"),j.get("first_seq"),j.get("last_seq"),j.get("dedup_entries"),w.get("clients"),up,sep=",")
except Exception: print(",,,,,")')
  M=$(curl -s -m 5 "http://127.0.0.1:$PORT/metrics")
  WG=$(printf '%s\n' "$M" | awk '/^callrelay_ws_clients /{print $2}')
  BB=$(printf '%s\n' "$M" | awk '/^callrelay_webhook_body_bytes/{s+=$2; n++}END{if (n) print s}')
  EST=$(ss -Htn state established "( sport = :$PORT )" | wc -l)
  IFS=, read -r JB FS LS DE WC UP <<< "$J"
  echo "$(date +%H:%M:%S),$(( $(date +%s) - T0 )),$PH,$RSS,$HWM,$FDS,$THR,$FB,$JB,$FS,$LS,$DE,$WC,$WG,$BB,$UP,$EST" >> "$OUT"
  [ -n "${SOAK_SAMPLE_ONCE:-}" ] && break
  sleep "$IV" & SP=$!; wait "$SP" || true
done
[ -n "$SP" ] && kill "$SP" 2>/dev/null; exit 0
