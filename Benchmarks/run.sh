#!/usr/bin/env bash
# `make bench`: runs every benchmark against the release build in $1 and
# writes BENCHMARKS.md at the repository root (the table, the machine, the
# commands, each target beside its figure).
#
# Every figure is the median and the range of at least 7 alternating runs:
# the baseline and the measured side interleaved (Benchmarks/alternate.py for
# whole programs; the same rounds inside the in-process benchmarks), never
# the best run. None of them is a pass/fail test.
#
# QUICK=1: smaller call counts, 2M calls only for uftrace, no Lua, 4 M
# events instead of 100 M for reading (about 2 minutes on 2 idle cores;
# the full run about 8, the reading bench's 100 M events included).
# BENCH_RUNS: rounds (>= 7).
# BENCHMARKS_OUT: where the report goes (default BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-.build/release}"
export BIN
BENCH_ROWS="$(mktemp)"
export BENCH_ROWS
trap 'rm -f "$BENCH_ROWS"' EXIT
started=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -n "${QUICK:-}" ]; then
    export RECORD_BENCH_CALLS="${RECORD_BENCH_CALLS:-5000000}" TRAMP_CALLS="${TRAMP_CALLS:-5000000}"
    export GRAPH_CALLS="${GRAPH_CALLS:-500000}" DISCOVERY_BENCH_FUNCTIONS="${DISCOVERY_BENCH_FUNCTIONS:-100000}"
    export READ_CALLS="${READ_CALLS:-2000000}"
fi
# One line per benchmark below.
Benchmarks/startup.sh "$BIN"
Benchmarks/uftrace-compare.sh "$BIN"
[ -n "${QUICK:-}" ] || Benchmarks/lua-compare.sh "$BIN"
Benchmarks/record-hotpath.sh "$BIN"
Benchmarks/tramp-cost.sh "$BIN"
Benchmarks/graph-cost.sh "$BIN"
Benchmarks/discovery-bench.sh "$BIN"
Benchmarks/poke-batch.sh "$BIN"
Benchmarks/reloc-batch.sh "$BIN"
Benchmarks/reading-bench.sh "$BIN"
Benchmarks/attach-latency.sh "$BIN"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(( $(date +%s) - started ))
python3 Benchmarks/write-report.py "$BENCH_ROWS" "${BENCHMARKS_OUT:-BENCHMARKS.md}" "$elapsed" "$load_before" "$load_after" "${QUICK:+quick}"
echo "bench: $elapsed s; load average before $load_before, after $load_after; wrote ${BENCHMARKS_OUT:-BENCHMARKS.md}"
