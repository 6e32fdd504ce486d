#!/usr/bin/env bash
# The whole test suite (the README's test command). Installs what a fresh
# machine lacks — the npm packages and Debian tools of the test peers, the
# tansu broker, cargo-fuzz — and reuses what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

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
