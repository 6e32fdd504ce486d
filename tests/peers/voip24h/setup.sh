#!/usr/bin/env bash
# Installs the socket.io 2.x and 4.x servers the Voip24h stand-in runs on (idempotent).
set -euo pipefail
cd "$(dirname "$0")"
# Installed again when package-lock.json changes (a pin moved) or an
# install was cut short; a registry hiccup is retried (a clean clone
# installs these every run).
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.package-lock.sha256 2>/dev/null)" != "$want" ]; then
  npm ci --prefer-offline --no-audit --no-fund --fetch-retries=5
  echo "$want" >node_modules/.package-lock.sha256
fi
