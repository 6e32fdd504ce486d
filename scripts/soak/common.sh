# Shared by the soak scripts (sourced, not run):
#   need_peers_and_relay TAG   installs the test peers' node_modules when missing
#                       and sets CALLRELAY_BIN (target/release/callrelay, built
#                       only if missing) unless it is set; TAG prefixes messages
#   start NAME CMD...   runs CMD in its own session, output to $PROCS_DIR/NAME.log,
#                       its pid in ${PID[NAME]} and $PROCS_DIR/NAME.pid
#   alive NAME          whether NAME still runs
#   stop NAME SECONDS   SIGTERM to its process group, SIGKILL after SECONDS
#   nap SECONDS         a sleep a trap can cut short (kill "$NAP")
# The caller sets PROCS_DIR before the first `start`. Every process is stopped
# by the pid it was started with, never by name: other relays, brokers and
# peers may run on the same machine.
# shellcheck shell=bash
declare -A PID=()
NAP=""
start() {
  local name=$1; shift
  setsid "$@" > "$PROCS_DIR/$name.log" 2>&1 < /dev/null &
  PID[$name]=$!
  echo "${PID[$name]}" > "$PROCS_DIR/$name.pid"
}
alive() { [ -n "${PID[$1]:-}" ] && kill -0 "${PID[$1]}" 2>/dev/null; }
stop() {
  local name=$1 grace=$2 pid=${PID[$1]:-} i
  [ -n "$pid" ] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 -- "-$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "PID[$name]"
}
nap() { sleep "$1" & NAP=$!; wait "$NAP" || true; NAP=""; }

need_peers_and_relay() {
  local tag=$1
  if [ ! -d "$REPO/tests/peers/voip24h/node_modules" ]; then
    echo "$tag: installing the Voip24h peer's node_modules (tests/peers/voip24h/setup.sh)"
    bash "$REPO/tests/peers/voip24h/setup.sh"
  fi
  if [ ! -d "$REPO/tests/peers/sprecord/node_modules/better-sse" ]; then
    echo "$tag: installing the SPRecord peer's node_modules (tests/peers/sprecord/setup.sh)"
    bash "$REPO/tests/peers/sprecord/setup.sh"
  fi
  if [ -z "${CALLRELAY_BIN:-}" ]; then
    CALLRELAY_BIN=$REPO/target/release/callrelay
    if [ ! -x "$CALLRELAY_BIN" ]; then
      echo "$tag: building $CALLRELAY_BIN"
      (cd "$REPO" && cargo build --release --bin callrelay)
    fi
  fi
  [ -x "$CALLRELAY_BIN" ] || die "CALLRELAY_BIN=$CALLRELAY_BIN is not an executable"
}
