#!/usr/bin/env bash
# Function-graph cost per call (issue 5): entry + exit of a hot function
# recorded into a trace directory (real drain), against the untraced call of
# the same function measured in the same run. $1: the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-.build/release}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
clang -O2 -fpatchable-function-entry=5 -shared -fPIC Benchmarks/hot-fixture.c -o "$WORK/hot-fixture.so"
"$BIN/livetrace-graph-bench" "$WORK/hot-fixture.so" "$WORK/trace" "${GRAPH_CALLS:-1000000}"
