#!/usr/bin/env bash
# reload.sh PID DURATION_S INTERVAL_S
# Every INTERVAL_S seconds (cwd = $SOAK_DIR) copies the next config over relay.toml
# and sends SIGHUP to the relay PID: B, A, B, A, invalid, B, A, ... (every fifth is
# invalid.toml, which the relay must refuse and keep running). Stops after DURATION_S
# or on SIGTERM/SIGINT; then puts config A back and sends a last SIGHUP, so the idle
# phase runs the same config as the baseline. One log line per reload on stdout.
set -u
PID=$1; DUR=$2; IV=${3:-60}
T0=$(date +%s); i=0; stop=""; SP=""
trap 'stop=1' TERM INT
while [ -z "$stop" ] && [ $(( $(date +%s) - T0 + IV )) -le "$DUR" ] && kill -0 "$PID" 2>/dev/null; do
  sleep "$IV" & SP=$!; wait "$SP" || true   # wait returns at once on a signal
  [ -n "$stop" ] && break
  i=$((i + 1))
  if [ $((i % 5)) -eq 0 ]; then cp invalid.toml relay.toml; K=invalid
  elif [ $((i % 2)) -eq 0 ]; then cp base.toml relay.toml; K=A
  else cp config_b.toml relay.toml; K=B; fi
  kill -HUP "$PID" && echo "$(date +%H:%M:%S) reload $i -> $K"
done
[ -n "$SP" ] && kill "$SP" 2>/dev/null   # a sleep left running by a signal
cp base.toml relay.toml
if kill -HUP "$PID" 2>/dev/null; then echo "$(date +%H:%M:%S) reload final -> A"; fi
