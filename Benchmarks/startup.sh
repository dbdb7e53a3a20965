#!/usr/bin/env bash
# Start-up (issue 14): what `livetrace record` adds to a program that makes
# three traced functions' few calls (Examples/fib.c, `fib 3`, gcc -O2
# -fpatchable-function-entry=5), beside `uftrace record -P .` on the same
# binary, in alternating runs (Benchmarks/alternate.py: the order rotates
# every round). Added time = traced run - untraced run of the same round;
# wall time is what the user waits for, CPU time (user + system of every
# process, getrusage) is steadier on a shared machine. Figures are the
# median and the range, never the best run; the ratio is taken per round.
# Target: livetrace's added wall time at most a third of uftrace's.
#
# STARTUP_PHASES=1 also prints where livetrace's CPU time goes, by phase
# (Benchmarks/startup-phases.py, needs perf).
# $1: the release build. BENCH_RUNS: rounds (at least 7; default 11).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(cd "${1:-.build/release}" && pwd)"
RUNS="${BENCH_RUNS:-11}"
[ "$RUNS" -ge 7 ] || RUNS=7
if ! command -v uftrace >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y -qq uftrace >/dev/null
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
REPO="$(pwd)"
gcc -O2 -fpatchable-function-entry=5 Examples/fib.c -o "$WORK/fib"
python3 Benchmarks/alternate.py --quiet --runs "$RUNS" --cwd "$WORK" --json "$WORK/startup.json" \
    --clean "$WORK/lt" --clean "$WORK/lt.old" --clean "$WORK/uf" \
    plain -- "$WORK/fib" 3 \
    ::: uftrace -- uftrace record -d "$WORK/uf" -P . "$WORK/fib" 3 \
    ::: livetrace -- "$BIN/livetrace" record -d "$WORK/lt" -- "$WORK/fib" 3

python3 - "$WORK/startup.json" "$RUNS" <<'PY'
import sys
sys.path.insert(0, "Benchmarks")
from benchlib import load, describe, row, spread, verdict, ratios
r = load(sys.argv[1]); runs = int(sys.argv[2])
lt_wall, uf_wall = r["livetrace"]["added_wall_ms"], r["uftrace"]["added_wall_ms"]
lt_cpu, uf_cpu = r["livetrace"]["added_cpu_ms"], r["uftrace"]["added_cpu_ms"]
ratio = ratios(lt_wall, uf_wall)
ratio_cpu = ratios(lt_cpu, uf_cpu)
print(f"startup: record -- fib 3 (three functions, 6 events), {runs} alternating rounds, ms added to the program: median (range)")
print(f"  untraced fib 3             wall {describe(r['plain']['wall_ms'])}")
print(f"  uftrace 0.13 record -P .   wall +{describe(uf_wall)}  cpu +{describe(uf_cpu)}")
print(f"  livetrace record           wall +{describe(lt_wall)}  cpu +{describe(lt_cpu)}")
print(f"  ratio livetrace / uftrace per round: wall {describe(ratio, 2)}, cpu {describe(ratio_cpu, 2)} (target <= 0.33)")
row("start-up, livetrace record -- fib 3: added wall time", lt_wall, "ms")
row("start-up, uftrace record -P . fib 3: added wall time", uf_wall, "ms")
row("start-up, livetrace record -- fib 3: added CPU time", lt_cpu, "ms")
row("start-up, uftrace record -P . fib 3: added CPU time", uf_cpu, "ms")
row("ratio start-up livetrace / uftrace (wall)", ratio, "x", "<= 0.33x", verdict(spread(ratio)[0] <= 1 / 3), digits=2)
PY
if [ -n "${STARTUP_PHASES:-}" ] && command -v perf >/dev/null; then
    echo "  livetrace's CPU time by phase (perf, 5 runs):"
    (cd "$WORK" && python3 "$REPO/Benchmarks/startup-phases.py" 5 "$BIN/livetrace" "$WORK/fib" 3)
fi
