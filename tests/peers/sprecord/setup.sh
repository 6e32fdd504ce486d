#!/usr/bin/env bash
# Installs the SPRecord stand-in's npm dependencies (better-sse); idempotent.
set -euo pipefail
cd "$(dirname "$0")"
bash ../npm-ci.sh
