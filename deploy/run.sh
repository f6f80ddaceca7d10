#!/bin/sh
# Installs dependencies, builds, and starts kmsd on the embedded defaults:
# a SoftHSM token and an SQLite database under ./.kmsd-data (created on the
# first run), serving gRPC on 127.0.0.1:7700. Ctrl-C stops it cleanly.
# Usage: deploy/run.sh [extra kmsd flags]
set -eu
cd "$(dirname "$0")/.."
deploy/install-deps.sh
deploy/build.sh
exec build/release/daemon/kmsd --data-dir "${KMSD_DATA_DIR:-.kmsd-data}" \
  --listen "${KMSD_LISTEN:-127.0.0.1:7700}" "$@"
