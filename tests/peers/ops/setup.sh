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

# sudo drops the environment: the variable goes through `env`, and apt reads
# no terminal, so a debconf question cannot wait unseen.
apt() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get "$@" </dev/null >/dev/null 2>&1; }
updated=""
# Whether a prometheus service was already enabled here before this run: the
# host's own monitoring is left alone.
prometheus_was_enabled=""
if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled --quiet prometheus 2>/dev/null; then
  prometheus_was_enabled=1
fi
# One package at a time: one that cannot be installed does not hold back the
# others. The package lists are refreshed once, the first time one fails.
for package in "${missing[@]}"; do
  if ! apt install -y -qq --no-install-recommends "$package" && [ -z "$updated" ]; then
    updated=1
    apt update -qq || true
    apt install -y -qq --no-install-recommends "$package" || true
  fi
done
# The prometheus service this run's package installed is not needed by the
# tests; where systemd runs it, it is stopped and kept from starting at boot.
if [ -z "$prometheus_was_enabled" ] && [[ " ${missing[*]} " == *" prometheus "* ]] \
  && command -v systemctl >/dev/null 2>&1 && systemctl is-enabled --quiet prometheus 2>/dev/null; then
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
still=()
command -v promtool >/dev/null 2>&1 || still+=(promtool)
command -v systemd-analyze >/dev/null 2>&1 || still+=(systemd-analyze)
command -v prlimit >/dev/null 2>&1 || still+=(prlimit)
if [ ${#still[@]} -eq 0 ]; then
  echo "ops setup: installed ${missing[*]}"
else
  echo "ops setup: still missing ${still[*]}; tests needing them will fail under scripts/test.sh"
fi
exit 0
