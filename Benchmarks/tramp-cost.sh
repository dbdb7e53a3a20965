#!/usr/bin/env bash
# Trampoline cost per call (issue 4): builds the fixture, runs the Swift
# benchmark from the release build in $1. Prints ns/call and the added cost
# against the untraced call measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-.build/release}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
clang -O2 -fpatchable-function-entry=5 -shared -fPIC Benchmarks/hot-fixture.c -o "$WORK/hot-fixture.so"
"$BIN/livetrace-tramp-bench" "$WORK/hot-fixture.so" "${TRAMP_CALLS:-20000000}"
