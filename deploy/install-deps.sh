#!/bin/sh
# Installs kmsd's build, run and test dependencies from Debian 12 packages.
# Idempotent; skips apt entirely when everything is already installed.
# Runs as root, or through sudo when started by another user.
set -eu

PACKAGES="
  build-essential cmake pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libssl-dev libsqlite3-dev libyaml-cpp-dev libcli11-dev libp11-kit-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev libgoogle-perftools-dev
  softhsm2 opensc sqlite3 faketime python3 python3-grpcio python3-protobuf
  clang libclang-rt-14-dev
"

missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  exec sudo "$0" "$@"
fi
echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
