#!/usr/bin/env bash
# Discovery benchmark: `livetrace list` on a generated shared object with
# 100,000 instrumented functions (plus 10,000 without a site), against
# baselines measured in the same run:
#   startup  `livetrace list` on a 3-function object (process start, Swift runtime)
#   nm       `nm --defined-only` on the big object (binutils reading the same symbols)
# Each figure is the best of 7 runs, as wall time and as CPU time (user +
# system, from getrusage: steadier than wall time on a loaded machine).
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

python3 - "$sites" "$LIVETRACE" "$work" <<'PY'
import os, resource, subprocess, sys, time

sites, livetrace, work = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def best(argv, runs=7):
    """Best wall and best CPU (user+sys) time of `runs` runs, in ms."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=False)
        walls.append((time.perf_counter() - start) * 1e3)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1e3)
    return min(walls), min(cpus)

big, small = f"{work}/big.so", f"{work}/small.so"
startup = best([livetrace, "list", "--summary", "--no-lines", small])
nm = best(["nm", "--defined-only", big])
plain = best([livetrace, "list", "--summary", "--no-lines", big])
lines = best([livetrace, "list", "--summary", big])
json = best([livetrace, "list", "--json", "--no-lines", big])

print(f"discovery: {sites} sites in one object (generated, gcc -fpatchable-function-entry=5 layout); best of 7, wall / cpu")
print(f"  startup baseline (3-site object)        {startup[0]:8.1f} / {startup[1]:8.1f} ms")
print(f"  nm --defined-only baseline (big object) {nm[0]:8.1f} / {nm[1]:8.1f} ms")
d = (plain[0] - startup[0], plain[1] - startup[1])
print(f"  list --summary --no-lines               {plain[0]:8.1f} / {plain[1]:8.1f} ms  -> discovery {d[0]:.1f} / {d[1]:.1f} ms "
      f"({d[1] * 1e6 / sites:.0f} ns/site cpu), {plain[1] / nm[1]:.2f}x nm cpu")
print(f"  list --summary (DWARF lines)            {lines[0]:8.1f} / {lines[1]:8.1f} ms  -> discovery {lines[0] - startup[0]:.1f} / {lines[1] - startup[1]:.1f} ms")
print(f"  list --json --no-lines (all rows)       {json[0]:8.1f} / {json[1]:8.1f} ms")
print(f"  target: discovery < 100 ms for 100k sites (cpu): {'met' if d[1] < 100 else 'NOT met'}")
PY
