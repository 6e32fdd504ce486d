#!/usr/bin/env bash
# Test peer for tests/ops.rs: promtool (Debian's `prometheus` package), which
# lints the relay's /metrics output. Idempotent and quiet: does nothing when
# promtool is already on PATH. It does not fail by itself: under scripts/test.sh
# (CALLRELAY_REQUIRE_TOOLS) the tests that need promtool fail and say why;
# under a plain `cargo test` they say they skipped it.
set -uo pipefail

command -v promtool >/dev/null 2>&1 && exit 0
command -v apt-get >/dev/null 2>&1 || { echo "ops setup: no apt-get; tests needing promtool will fail under scripts/test.sh"; exit 0; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "ops setup: not root and no sudo; tests needing promtool will fail under scripts/test.sh"; exit 0
  fi
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when apt does not know the package yet.
if ! apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  $SUDO apt-get update -qq >/dev/null 2>&1 || true
fi
# --no-install-recommends keeps it to the prometheus binaries (promtool among them);
# policy-rc.d-less containers may not start the service, which is what we want.
if $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; then
  # The package's service is not needed by the tests; stop it where systemd runs it.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    $SUDO systemctl stop prometheus >/dev/null 2>&1 || true
  fi
  echo "ops setup: installed promtool ($(command -v promtool))"
else
  echo "ops setup: could not install the prometheus package; tests needing promtool will fail under scripts/test.sh"
fi
exit 0
