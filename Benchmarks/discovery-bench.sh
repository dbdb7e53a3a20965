#!/usr/bin/env bash
# Discovery benchmark: `livetrace list` on a generated shared object with
# 100,000 instrumented functions (plus 10,000 without a site), against
# baselines measured in the same run:
#   startup  `livetrace list` on a 3-function object (process start, Swift runtime)
#   nm       `nm --defined-only` on the big object (binutils reading the same symbols)
# Each figure is the best of 5 runs. Discovery time = big run - startup.
# Target (issue 2): under 100 ms for 100k sites.
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

# best_ms CMD...: the fastest of 5 runs, in milliseconds (3 decimals).
best_ms() {
    local best=""
    for _ in 1 2 3 4 5; do
        local start end
        start=$(date +%s%N)
        "$@" > /dev/null
        end=$(date +%s%N)
        local ns=$((end - start))
        if [[ -z "$best" || $ns -lt $best ]]; then best=$ns; fi
    done
    awk -v ns="$best" 'BEGIN { printf "%.3f", ns / 1e6 }'
}

sites=$("$LIVETRACE" list --summary --no-lines "$work/big.so" | grep -o '^summary: [0-9]* sites found' | grep -o '[0-9]*')
startup=$(best_ms "$LIVETRACE" list --summary --no-lines "$work/small.so")
nm_ms=$(best_ms nm --defined-only "$work/big.so")
plain=$(best_ms "$LIVETRACE" list --summary --no-lines "$work/big.so")
lines=$(best_ms "$LIVETRACE" list --summary "$work/big.so")
json=$(best_ms "$LIVETRACE" list --json --no-lines "$work/big.so")

awk -v s="$sites" -v st="$startup" -v nm="$nm_ms" -v p="$plain" -v l="$lines" -v j="$json" 'BEGIN {
    printf "discovery: %d sites in one object (generated, gcc -fpatchable-function-entry=5 layout)\n", s
    printf "  startup baseline (3-site object)        %9.3f ms\n", st
    printf "  nm --defined-only baseline (big object) %9.3f ms\n", nm
    printf "  list --summary --no-lines               %9.3f ms  -> discovery %8.3f ms (%.1f ns/site), %.2fx nm\n", p, p - st, (p - st) * 1e6 / s, p / nm
    printf "  list --summary (DWARF lines)            %9.3f ms  -> discovery %8.3f ms\n", l, l - st
    printf "  list --json --no-lines (all rows)       %9.3f ms\n", j
    printf "  target: discovery < 100 ms for 100k sites: %s\n", (p - st < 100 ? "met" : "NOT met")
}'
