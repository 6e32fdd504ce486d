#!/usr/bin/env bash
# Installs the SPRecord stand-in's npm dependencies (better-sse) once; idempotent.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -d node_modules/better-sse ]; then
  # A registry hiccup is retried: a clean clone installs these every run.
  npm ci --prefer-offline --no-audit --no-fund --fetch-retries=5
fi
