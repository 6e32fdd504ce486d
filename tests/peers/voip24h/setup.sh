#!/bin/sh
# Installs the socket.io 2.x and 4.x servers the Voip24h stand-in runs on (idempotent).
set -e
cd "$(dirname "$0")"
[ -d node_modules ] || npm ci --prefer-offline --no-audit --no-fund
