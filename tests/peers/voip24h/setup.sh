#!/bin/sh
# Installs the socket.io 2.x and 4.x servers the Voip24h stand-in runs on (idempotent).
set -e
cd "$(dirname "$0")"
# A registry hiccup is retried: a clean clone installs these every run.
[ -d node_modules ] || npm ci --prefer-offline --no-audit --no-fund --fetch-retries=5
