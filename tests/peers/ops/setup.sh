#!/usr/bin/env bash
# Test peers for tests/ops.rs: promtool (Debian's `prometheus` package), which
# lints the relay's /metrics output and unit-tests the alert rules;
# systemd-analyze (`systemd`), which verifies the unit; prlimit (`util-linux`),
# which stands in for a full disk. Idempotent and quiet: installs only what is
# not on PATH. It does not fail by itself: under scripts/test.sh
# (CALLRELAY_REQUIRE_TOOLS) a test whose tool is still missing fails and says
# which; under a plain `cargo test` it says it skipped that check.
set -uo pipefail

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v prlimit >/dev/null 2>&1 || missing+=(util-linux)
[ ${#missing[@]} -eq 0 ] && exit 0
command -v apt-get >/dev/null 2>&1 || { echo "ops setup: no apt-get to install ${missing[*]}; tests needing them will fail under scripts/test.sh"; exit 0; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "ops setup: not root and no sudo to install ${missing[*]}; tests needing them will fail under scripts/test.sh"; exit 0
  fi
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists only when apt does not know a package yet.
for package in "${missing[@]}"; do
  if ! apt-cache policy "$package" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    break
  fi
done
# --no-install-recommends keeps it to the binaries; policy-rc.d-less
# containers may not start prometheus's service, which is what we want.
if $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  # The prometheus service is not needed by the tests; stop it where systemd runs it.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    $SUDO systemctl stop prometheus >/dev/null 2>&1 || true
  fi
  echo "ops setup: installed ${missing[*]}"
else
  echo "ops setup: could not install ${missing[*]}; tests needing them will fail under scripts/test.sh"
fi
exit 0
