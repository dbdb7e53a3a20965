#!/usr/bin/env bash
# A real program (issue 14): Lua 5.4 from Debian's source package running
# scripts/real-programs/workload.lua, built by scripts/real-programs.sh
# (which first checks that livetrace's trace of every build is exact), here
# the gcc -O0 -pg -mfentry build that both tracers record: `uftrace record
# --no-libcall` and `livetrace record`, alternating with the untraced run
# (Benchmarks/alternate.py). Extra time = traced - untraced wall time of the
# same round; median and range, never the best; the ratio is per round.
# Target: livetrace's extra time at least 4 times less than uftrace's.
#
# LUA_WORK: where the source and the builds are kept between runs (default
# ~/.cache/livetrace-bench/lua; the first run downloads the source package).
# $1: the release build. BENCH_RUNS: rounds (at least 7).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(cd "${1:-.build/release}" && pwd)"
RUNS="${BENCH_RUNS:-7}"
[ "$RUNS" -ge 7 ] || RUNS=7
LUA_WORK="${LUA_WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/livetrace-bench/lua}"
mkdir -p "$LUA_WORK"
# The timing goes on when a count differs (it is reported beside the figures);
# it stops when no build could be made.
if REAL_PROGRAMS_WORK="$LUA_WORK" scripts/real-programs.sh "$BIN" >"$LUA_WORK/real-programs.log" 2>&1; then
    exact=$(tail -1 "$LUA_WORK/real-programs.log")
else
    exact="FAILED: $(grep -E 'differs on [1-9]|differs from' "$LUA_WORK/real-programs.log" | tr '\n' ' ') (log: $LUA_WORK/real-programs.log)"
fi
[ -x "$LUA_WORK/lua-gcc-pg" ] || { tail -20 "$LUA_WORK/real-programs.log"; echo "lua-compare: no Lua build"; exit 1; }
python3 Benchmarks/alternate.py --quiet --runs "$RUNS" --cwd "$LUA_WORK" --json "$LUA_WORK/lua-compare.json" \
    --clean "$LUA_WORK/bench-lt" --clean "$LUA_WORK/bench-lt.old" --clean "$LUA_WORK/bench-uf" \
    untraced -- ./lua-gcc-pg workload.lua \
    ::: uftrace -- uftrace record --no-libcall -d "$LUA_WORK/bench-uf" ./lua-gcc-pg workload.lua \
    ::: livetrace -- "$BIN/livetrace" record -d "$LUA_WORK/bench-lt" -- ./lua-gcc-pg workload.lua
rm -f "$LUA_WORK/lua-compare.json.last"; mv "$LUA_WORK/lua-compare.json" "$LUA_WORK/lua-compare.json.last"
# The workload's calls, as the counting __fentry__ of real-programs.sh found
# them for this build (BENCHMARKS.md sets them against the per-call floor).
calls=$(sed -n 's/^lua-gcc-pg: [0-9]* functions, \([0-9]*\) calls counted.*/\1/p' "$LUA_WORK/real-programs.log" | head -1)
python3 - "$LUA_WORK/lua-compare.json.last" "$RUNS" "$exact" "${calls:-}" <<'PY'
import sys
sys.path.insert(0, "Benchmarks")
from benchlib import load, describe, row, spread, verdict, ratios
r = load(sys.argv[1]); runs = int(sys.argv[2])
uf, lt = r["uftrace"]["added_wall_ms"], r["livetrace"]["added_wall_ms"]
ratio = ratios(uf, lt)
print(f"lua-compare: lua-gcc-pg workload.lua (Debian lua5.4, gcc -O0 -pg -mfentry), {runs} alternating rounds, ms: median (range)")
print(f"  untraced                          {describe(r['untraced']['wall_ms'])}")
print(f"  uftrace 0.13 record --no-libcall  +{describe(uf)}")
print(f"  livetrace record                  +{describe(lt)}")
print(f"  ratio uftrace / livetrace extra time per round {describe(ratio)} (target >= 4x)")
# The CPU time of the same rounds (every process: program, tracer, drain),
# beside the wall figures the target uses: what waiting for a CPU adds shows.
print(f"  CPU time of the same rounds: uftrace +{describe(r['uftrace']['added_cpu_ms'])}  livetrace +{describe(r['livetrace']['added_cpu_ms'])}")
print(f"  exactness (scripts/real-programs.sh): {sys.argv[3]}")
row("Lua workload: livetrace record extra time", lt, "ms")
row("Lua workload: uftrace record extra time", uf, "ms")
row("ratio Lua extra time uftrace / livetrace", ratio, "x", ">= 4x", verdict(spread(ratio)[0] >= 4))
if len(sys.argv) > 4 and sys.argv[4].isdigit():
    row("Lua workload: calls (the counting __fentry__ of real-programs.sh)", [int(sys.argv[4])], "calls", digits=0)
# Exactness is a fact, not a figure: one row with its verdict.
import os
exact = not sys.argv[3].startswith("FAILED")
if os.environ.get("BENCH_ROWS"):
    with open(os.environ["BENCH_ROWS"], "a") as out:
        detail = "every build, every function" if exact else sys.argv[3].split("(log:")[0].replace("FAILED: ", "")
        out.write(f"Lua traces exact against a counting __fentry__ (scripts/real-programs.sh): {detail}\t-\t-\t\texact\t{verdict(exact)}\n")
PY
