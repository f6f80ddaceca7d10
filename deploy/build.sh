#!/bin/sh
# Builds kmsd and kmsctl (release, no tests) into build/release.
# Usage: deploy/build.sh
set -eu
cd "$(dirname "$0")/.."
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKMS_BUILD_TESTS=OFF >/dev/null
cmake --build build/release -j"$(nproc)"
