#!/usr/bin/env bash
# The whole test suite (the README's test command). Installs what a fresh
# machine lacks — the npm packages and Debian tools of the test peers, the
# tansu broker, cargo-fuzz — and reuses what is already installed; Node.js
# 20 or newer with npm must be there already.
set -euo pipefail
cd "$(dirname "$0")/.."

# Node.js 20 or newer with npm, which this script does not install: the
# peers' setups run `npm ci`, tests/sprecord.rs spawns `node`, and the
# SPRecord peer's better-sse needs 20 (Debian 12's own nodejs is 18). Checked
# first, so that a fresh host learns what to install instead of stopping at
# "npm: command not found".
node_help="install Node.js 20 or newer with npm (Debian 12's own nodejs is 18, too old), e.g. from NodeSource (https://github.com/nodesource/distributions) or with nvm (https://github.com/nvm-sh/nvm)"
for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "scripts/test.sh: $tool is not on PATH; the test peers need it: $node_help" >&2
    exit 1
  fi
done
node_version=$(node --version 2>/dev/null || true)
node_major=${node_version#v}
node_major=${node_major%%.*}
case "$node_major" in '' | *[!0-9]*) node_major=0 ;; esac
if [ "$node_major" -lt 20 ]; then
  echo "scripts/test.sh: node ${node_version:-(no version)} is on PATH, too old for the test peers: $node_help" >&2
  exit 1
fi

# Test peers: each tests/peers/<name>/setup.sh installs its own dependencies, idempotently.
for setup in tests/peers/*/setup.sh; do
  [ -f "$setup" ] || continue
  echo "== setup: $setup"
  bash "$setup"
done

# tansu, the Kafka-compatible broker for the end-to-end Kafka tests, at the
# version whose command line tests/peers/tansu/broker.rs speaks (a newer
# release changed its features; another version on PATH is replaced).
export PATH="$HOME/.cargo/bin:$PATH"
TANSU_VERSION=0.6.0
if [ "$(tansu --version 2>/dev/null)" != "tansu $TANSU_VERSION" ]; then
  echo "== installing tansu $TANSU_VERSION (once; about 10 minutes on 2 cores)"
  # Built in a directory of its own, not in the relay's CARGO_TARGET_DIR.
  env -u CARGO_TARGET_DIR cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
fi

echo "== cargo test"
# The tools the setups above install are required from here on: a test that
# would otherwise skip its check (promtool, systemd-analyze, prlimit) fails.
export CALLRELAY_REQUIRE_TOOLS=1
# Test threads default to the number of cores; CALLRELAY_TEST_THREADS overrides.
# Bounded: a test that hangs (a stop that never ends) fails the run within
# the hour, well inside CI's 90 minutes, instead of taking all of them.
status=0
timeout -k 60 60m cargo test --no-fail-fast ${CALLRELAY_TEST_THREADS:+-- --test-threads="$CALLRELAY_TEST_THREADS"} || status=$?
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
  echo "cargo test ran past its 60 minutes and was stopped: a test hung (libtest's 'has been running for over 60 seconds' lines above name it)" >&2
fi
[ "$status" = 0 ] || exit "$status"

# Fuzz every vendor parser and the config loader for a bounded time
# (CALLRELAY_FUZZ_SECONDS per target, default 15; 0 skips).
if [ "${CALLRELAY_FUZZ_SECONDS:-15}" != "0" ]; then
  echo "== fuzz (${CALLRELAY_FUZZ_SECONDS:-15}s per target)"
  scripts/fuzz.sh "${CALLRELAY_FUZZ_SECONDS:-15}"
fi
