#!/usr/bin/env bash
# Attach and detach latency (issue 11): `livetrace record -p PID` on a
# running program with 10,000 functions with sites (Benchmarks/
# discovery-generate.py: gcc's five 1-byte nops, so every site is also
# normalized), all of them traced, one of them called every 100 us.
#   attach: from the command's start to its "recording pid" line, printed
#           when the session reports every site patched (the program's next
#           call, within 100 us, is the first event), before the CLI
#           captures the memory map;
#   detach: from SIGINT to the session's "detached" (every site back to
#           the file's bytes, the rings released: the summary's "detach"),
#           and to livetrace's exit (the trace finished).
# The same process is attached to again and again: rounds alternate
# attach and detach by nature; figures are the median and the range.
# Target: under 50 ms each. $1: the release build. BENCH_RUNS: rounds (>= 7).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(cd "${1:-.build/release}" && pwd)"
RUNS="${BENCH_RUNS:-11}"
[ "$RUNS" -ge 7 ] || RUNS=7
WORK="$(mktemp -d)"
PROGRAM_PID=""
trap '[ -n "$PROGRAM_PID" ] && kill "$PROGRAM_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
python3 Benchmarks/discovery-generate.py 10000 "$WORK/src"
cat > "$WORK/main.c" <<'C'
#include <unistd.h>
int f0(int);
int main(void) { for (volatile int i = 0;; i++) { f0(i); usleep(100); } }
C
gcc -O1 "$WORK/main.c" "$WORK"/src/part-*.s -o "$WORK/many"
"$WORK/many" & PROGRAM_PID=$!
sleep 0.2
python3 Benchmarks/attach-latency.py "$BIN/livetrace" "$PROGRAM_PID" "$RUNS" "$WORK"
