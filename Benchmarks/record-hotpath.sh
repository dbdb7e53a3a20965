#!/usr/bin/env bash
# Recording hot path: cost per traced call of lt_record_entry + lt_record_exit
# against the same loop without recording (baseline in the same run).
# Usage: Benchmarks/record-hotpath.sh [BIN]   (BIN unused: the benchmark
# compiles the writer layer itself, as the LD_PRELOAD shim and trampolines
# link it, with -O2).
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
gcc -O2 -pthread -I Sources/CLiveTraceShims/include \
    Benchmarks/record-hotpath.c Sources/CLiveTraceShims/lt_record.c Sources/CLiveTraceShims/lt_context.c Sources/CLiveTraceShims/lt_sys.c -o "$work/record-hotpath"
"$work/record-hotpath" "${RECORD_BENCH_CALLS:-20000000}"
