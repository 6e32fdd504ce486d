#!/usr/bin/env bash
# Installs the npm packages of the test peer in the current directory, from
# its package-lock.json, when they are missing, the lockfile changed (a pin
# moved) or an install was cut short: a stamp of the lockfile's sha256 is
# written once `npm ci` succeeds. A registry hiccup is retried (a clean clone
# installs these every run). Called by each peer's setup.sh.
set -euo pipefail
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.package-lock.sha256 2>/dev/null)" != "$want" ]; then
  npm ci --prefer-offline --no-audit --no-fund --fetch-retries=5
  echo "$want" >node_modules/.package-lock.sha256
fi
