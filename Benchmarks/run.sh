#!/usr/bin/env bash
# `make bench`: runs every benchmark against the release build in $1.
# Each benchmark measures its own baseline in the same run and prints ratios;
# none of them is a pass/fail test.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-.build/release}"
export BIN
# One line per benchmark below.
Benchmarks/record-hotpath.sh "$BIN"
Benchmarks/tramp-cost.sh "$BIN"
Benchmarks/discovery-bench.sh "$BIN"
Benchmarks/poke-batch.sh "$BIN"
Benchmarks/graph-cost.sh "$BIN"
Benchmarks/reloc-batch.sh "$BIN"
Benchmarks/uftrace-compare.sh "$BIN"
