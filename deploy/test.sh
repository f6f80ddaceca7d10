#!/bin/sh
# Installs dependencies, builds everything with AddressSanitizer and
# UndefinedBehaviorSanitizer, warnings as errors, and runs the whole test
# suite: unit, SoftHSM, keystore, end-to-end (real kmsd processes), Python
# client, and the fuzzers of the blob, import token and key policy parsers
# (short libFuzzer runs when clang is present; corpus replays in any build).
# Usage: deploy/test.sh [extra ctest arguments]
set -eu
cd "$(dirname "$0")/.."
deploy/install-deps.sh

jobs=$(nproc)
cmake -S . -B build/test -DCMAKE_BUILD_TYPE=Debug -DKMS_SANITIZE=ON -DKMS_WERROR=ON >/dev/null
cmake --build build/test -j"$jobs"

if command -v clang++ >/dev/null 2>&1; then
  # The libFuzzer build of the blob parser needs clang; only that target.
  cmake -S . -B build/fuzz -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
    -DCMAKE_CXX_COMPILER=clang++ >/dev/null
  cmake --build build/fuzz -j"$jobs" \
    --target ciphertext_blob_fuzzer import_token_fuzzer policy_fuzzer
  tests/fuzz/fuzz_smoke.sh build/fuzz/tests/fuzz/ciphertext_blob_fuzzer tests/fuzz/corpus 20000
  tests/fuzz/fuzz_smoke.sh build/fuzz/tests/fuzz/import_token_fuzzer tests/fuzz/corpus_import_token 20000
  tests/fuzz/fuzz_smoke.sh build/fuzz/tests/fuzz/policy_fuzzer tests/fuzz/corpus_policy 20000
fi

cd build/test
# Sanitizer reports fail the test that triggered them. Leak checking is off:
# libsofthsm2 and gRPC keep process-lifetime allocations that LSan reports.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
ctest -j"$jobs" --output-on-failure --timeout 300 "$@"
