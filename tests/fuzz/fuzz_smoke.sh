#!/bin/sh
# Runs a fuzzer briefly from its seed corpus. libFuzzer writes new
# inputs into its first corpus directory, so that one is a scratch copy and
# the checked-in seeds stay as they are.
# Usage: fuzz_smoke.sh FUZZER CORPUS_DIR [RUNS]
set -eu
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$1" -runs="${3:-20000}" -seed=1 "$scratch" "$2"
