#!/usr/bin/env bash
# Installs the proxy peer's npm dependencies (proxy); idempotent.
set -euo pipefail
cd "$(dirname "$0")"
bash ../npm-ci.sh
