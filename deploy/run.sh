#!/bin/sh
# Installs dependencies, builds, and starts kmsd on the embedded defaults:
# a SoftHSM token and an SQLite database under ./.kmsd-data (created on the
# first run), serving gRPC with mTLS on 127.0.0.1:7700 with a development PKI
# under ./.kmsd-data/tls (also made on the first run). Prints how to point
# kmsctl at it. Ctrl-C stops it cleanly.
# Usage: deploy/run.sh [extra kmsd flags]
set -eu
cd "$(dirname "$0")/.."
deploy/install-deps.sh
deploy/build.sh
data_dir="${KMSD_DATA_DIR:-.kmsd-data}"
case "$data_dir" in /*) ;; *) data_dir="$(pwd)/$data_dir" ;; esac
cat <<EOF

kmsd serves mTLS with a development PKI under $data_dir/tls (made on the first
run; the admin client certificate is an administrator). In another terminal:

  export KMSCTL_CA=$data_dir/tls/ca.pem
  export KMSCTL_CERT=$data_dir/tls/admin.pem KMSCTL_KEY=$data_dir/tls/admin.key
  build/release/client/kmsctl create-key --description "my first key"

EOF
exec build/release/daemon/kmsd --data-dir "$data_dir" \
  --listen "${KMSD_LISTEN:-127.0.0.1:7700}" "$@"
