#!/usr/bin/env bash
# Discovery benchmark: `livetrace list` on a generated shared object with
# 100,000 instrumented functions (plus 10,000 without a site), against
# baselines measured in the same run:
#   startup  `livetrace list` on a 3-function object (process start, Swift runtime)
#   nm       `nm --defined-only` on the big object (binutils reading the same symbols)
# Alternating rounds (Benchmarks/alternate.py, BENCH_RUNS, at least 7): the
# median and range of wall time and of CPU time (user + system, getrusage:
# steadier than wall time on a loaded machine), never the best run.
# Discovery time = big run - startup. Target (issue 2): under 100 ms for 100k sites.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-${1:-.build/release}}"
LIVETRACE="$BIN/livetrace"
COUNT="${DISCOVERY_BENCH_FUNCTIONS:-100000}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 Benchmarks/discovery-generate.py "$COUNT" "$work/gen"
gcc -g -shared -fPIC "$work"/gen/*.s -o "$work/big.so"
printf 'int a(int x){return x+1;}\nint b(int x){return a(x)*2;}\nint c(int x){return b(x)-1;}\n' > "$work/small.c"
gcc -O1 -fpatchable-function-entry=5 -shared -fPIC "$work/small.c" -o "$work/small.so"

sites=$("$LIVETRACE" list --summary --no-lines "$work/big.so" | grep -o '^summary: [0-9]* sites found' | grep -o '[0-9]*')

python3 Benchmarks/alternate.py --quiet --runs "${BENCH_RUNS:-7}" --json "$work/discovery.json" \
    startup -- "$LIVETRACE" list --summary --no-lines "$work/small.so" \
    ::: nm -- nm --defined-only "$work/big.so" \
    ::: plain -- "$LIVETRACE" list --summary --no-lines "$work/big.so" \
    ::: lines -- "$LIVETRACE" list --summary "$work/big.so" \
    ::: json -- "$LIVETRACE" list --json --no-lines "$work/big.so"

python3 - "$sites" "$work/discovery.json" <<'PY'
import sys
sys.path.insert(0, "Benchmarks")
from benchlib import load, describe, row, spread, verdict
sites, r = int(sys.argv[1]), load(sys.argv[2])
runs = r["startup"]["runs"]
print(f"discovery: {sites} sites in one object (generated, gcc -fpatchable-function-entry=5 layout); "
      f"{runs} alternating rounds, ms: median (range), wall / cpu")
def line(label, name):
    print(f"  {label:<40} {describe(r[name]['wall_ms'])} / {describe(r[name]['cpu_ms'])}")
line("startup baseline (3-site object)", "startup")
line("nm --defined-only baseline (big object)", "nm")
line("list --summary --no-lines", "plain")
line("list --summary (DWARF lines)", "lines")
line("list --json --no-lines (all rows)", "json")
discovery_cpu = r["plain"]["added_cpu_ms"]
med = spread(discovery_cpu)[0]
nm_ratio = [p / n if n > 0 else float("inf") for p, n in zip(r["plain"]["cpu_ms"], r["nm"]["cpu_ms"])]
print(f"  discovery (big - startup), cpu: {describe(discovery_cpu)} ms, {med * 1e6 / sites:.0f} ns/site; "
      f"{describe(nm_ratio, 2)}x nm's cpu")
print(f"  target: discovery < 100 ms for 100k sites (cpu): {verdict(med < 100)}")
row("discovery of 100k sites (livetrace list, CPU above a 3-site object)", discovery_cpu, "ms", "< 100 ms", verdict(med < 100))
PY
