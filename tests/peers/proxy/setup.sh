#!/usr/bin/env bash
# Installs the proxy peer's npm dependencies (proxy) once; idempotent.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules/proxy ]; then
  # A registry hiccup is retried: a clean clone installs these every run.
  npm ci --prefer-offline --no-audit --no-fund --fetch-retries=5
fi
