#!/usr/bin/env bash
# Installs the socket.io 2.x and 4.x servers the Voip24h stand-in runs on (idempotent).
set -euo pipefail
cd "$(dirname "$0")"
bash ../npm-ci.sh
