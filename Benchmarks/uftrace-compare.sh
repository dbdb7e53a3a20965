#!/usr/bin/env bash
# Side by side with uftrace (issues 5 and 14): added time per call of
# recording the entry and exit of a hot function, `uftrace record -P .` vs
# `livetrace record`, on the same binary (Benchmarks/uftrace-fixture.c, gcc
# -O2 -fpatchable-function-entry=5), in alternating runs.
#
# Per call, start-up costs cancel out:
#   added = ((T(N) - T(n)) - (B(N) - B(n))) / (N - n)
# with T a traced run, B the untraced program, N the call count, n = N/100,
# the four taken in the same round (Benchmarks/alternate.py rotates the
# order every round). Figures are the median and the range over the rounds,
# never the best round; the ratio is taken per round.
#
#   1. N = 2M and N = 10M (QUICK=1: 2M only). Target: uftrace / livetrace >= 5.
#   2. Pinned (N = 2M): the program pins itself to CPU 0 (HOT_PIN_CPU), and
#      `livetrace` (the drain) runs under `taskset -c 0` (same core) or
#      `taskset -c 1` (the other core). Target: other / same <= 1.5.
#      Needs two CPUs; skipped on one.
#
# $1: the release build (livetrace and its shim). BENCH_RUNS: rounds (>= 7).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(cd "${1:-.build/release}" && pwd)"
RUNS="${BENCH_RUNS:-7}"
[ "$RUNS" -ge 7 ] || RUNS=7
SIZES="${UFTRACE_CALLS:-2000000 10000000}"
[ -n "${QUICK:-}" ] && SIZES="${UFTRACE_CALLS:-2000000}"
if ! command -v uftrace >/dev/null; then
    echo "uftrace-compare: installing uftrace"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y -qq uftrace >/dev/null
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
REPO="$(pwd)"
gcc -O2 -fpatchable-function-entry=5 "$REPO/Benchmarks/uftrace-fixture.c" -o "$WORK/nop"
ALT=(python3 "$REPO/Benchmarks/alternate.py" --quiet --runs "$RUNS" --cwd "$WORK" --clean "$WORK/data" --clean "$WORK/data.old")

for N in $SIZES; do
    n=$((N / 100))
    "${ALT[@]}" --json "$WORK/calls-$N.json" \
        plain-N -- "$WORK/nop" "$N" ::: plain-n -- "$WORK/nop" "$n" ::: \
        uftrace-N -- uftrace record -d "$WORK/data" --no-libcall -P . "$WORK/nop" "$N" \
        ::: uftrace-n -- uftrace record -d "$WORK/data" --no-libcall -P . "$WORK/nop" "$n" \
        ::: livetrace-N -- "$BIN/livetrace" record -d "$WORK/data" -- "$WORK/nop" "$N" \
        ::: livetrace-n -- "$BIN/livetrace" record -d "$WORK/data" -- "$WORK/nop" "$n"
done

# The recorded counts, checked once: both tracers saw every call.
N=${SIZES%% *}
"$BIN/livetrace" record -d "$WORK/data" -- "$WORK/nop" "$N" >/dev/null 2>"$WORK/summary"
live_summary=$(grep "livetrace record:" "$WORK/summary" || true)
live_calls=$("$BIN/livetrace" report -d "$WORK/data" --json | tr '{' '\n' | grep '"function" *: *"hot"' | sed 's/.*"calls" *: *\([0-9]*\).*/\1/')
rm -rf "$WORK/data"
(cd "$WORK" && uftrace record -d "$WORK/data" --no-libcall -P . "$WORK/nop" "$N" >/dev/null 2>&1)
uf_calls=$(uftrace report -d "$WORK/data" -f call 2>/dev/null | awk '$2 == "hot" { print $1 }')
rm -rf "$WORK/data"

PINNED=0
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    PINNED=1
    N=2000000; n=$((N / 100))
    "${ALT[@]}" --json "$WORK/pinned.json" \
        plain-N -- env HOT_PIN_CPU=0 "$WORK/nop" "$N" ::: plain-n -- env HOT_PIN_CPU=0 "$WORK/nop" "$n" \
        ::: same-N -- env HOT_PIN_CPU=0 taskset -c 0 "$BIN/livetrace" record -d "$WORK/data" -- "$WORK/nop" "$N" \
        ::: same-n -- env HOT_PIN_CPU=0 taskset -c 0 "$BIN/livetrace" record -d "$WORK/data" -- "$WORK/nop" "$n" \
        ::: other-N -- env HOT_PIN_CPU=0 taskset -c 1 "$BIN/livetrace" record -d "$WORK/data" -- "$WORK/nop" "$N" \
        ::: other-n -- env HOT_PIN_CPU=0 taskset -c 1 "$BIN/livetrace" record -d "$WORK/data" -- "$WORK/nop" "$n"
fi

python3 - "$WORK" "$RUNS" "$PINNED" "$SIZES" "${uf_calls:-?}" "${live_calls:-?}" "${live_summary:-none}" <<'PY'
import os, sys
sys.path.insert(0, "Benchmarks")
from benchlib import load, marginal_ns, marginal_cpu_ns, describe, row, spread, verdict, ratios
work, runs, pinned, sizes = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4].split()
uf_calls, live_calls, live_summary = sys.argv[5:8]
print(f"uftrace-compare: entry+exit of a hot function, same -fpatchable-function-entry=5 binary, "
      f"{runs} alternating rounds, added ns per call above the untraced program: median (range)")
for size in sizes:
    N = int(size); n = N // 100
    r = load(f"{work}/calls-{N}.json")
    uf = marginal_ns(r, "uftrace-N", "uftrace-n", "plain-N", "plain-n", N - n)
    lt = marginal_ns(r, "livetrace-N", "livetrace-n", "plain-N", "plain-n", N - n)
    ratio = ratios(uf, lt)
    label = f"{N / 1e6:g}M calls"
    print(f"  {label:>10}: uftrace 0.13 record -P . {describe(uf)}  livetrace record {describe(lt)}")
    print(f"  {'':>10}  ratio uftrace / livetrace per round {describe(ratio)} (target >= 5x)")
    # The CPU time of the same rounds (every process: program, tracer,
    # drain): a wall figure spread far wider than this one waited for a CPU.
    uf_cpu = marginal_cpu_ns(r, "uftrace-N", "uftrace-n", "plain-N", "plain-n", N - n)
    lt_cpu = marginal_cpu_ns(r, "livetrace-N", "livetrace-n", "plain-N", "plain-n", N - n)
    print(f"  {'':>10}  CPU time of the same rounds: uftrace {describe(uf_cpu)}  livetrace {describe(lt_cpu)}")
    row(f"livetrace record, hot call, {label}: added CPU time per call (program + drain)", lt_cpu, "ns")
    row(f"uftrace 0.13 record -P ., hot call, {label}: added CPU time per call (program + recorder)", uf_cpu, "ns")
    row(f"livetrace record, hot call, {label}: added per call", lt, "ns")
    row(f"uftrace 0.13 record -P ., hot call, {label}: added per call", uf, "ns")
    row(f"ratio uftrace / livetrace per call, {label}", ratio, "x", ">= 5x", verdict(spread(ratio)[0] >= 5))
print(f"  counts of hot, first size: uftrace {uf_calls}, livetrace {live_calls}; livetrace's summary: {live_summary}")
if pinned:
    N = 2000000; n = N // 100
    r = load(f"{work}/pinned.json")
    same = marginal_ns(r, "same-N", "same-n", "plain-N", "plain-n", N - n)
    other = marginal_ns(r, "other-N", "other-n", "plain-N", "plain-n", N - n)
    ratio = ratios(other, same)
    print(f"  pinned, 2M calls, program on CPU 0: drain on the same core {describe(same)}, on the other core {describe(other)}")
    print(f"  {'':>10}  ratio other core / same core per round {describe(ratio, 2)} (target <= 1.5)")
    same_cpu = marginal_cpu_ns(r, "same-N", "same-n", "plain-N", "plain-n", N - n)
    other_cpu = marginal_cpu_ns(r, "other-N", "other-n", "plain-N", "plain-n", N - n)
    print(f"  {'':>10}  CPU time of the same rounds: same core {describe(same_cpu)}, other core {describe(other_cpu)}")
    row("livetrace record, 2M calls, drain on the same core (pinned): added per call", same, "ns")
    row("livetrace record, 2M calls, drain on the other core (pinned): added per call", other, "ns")
    row("ratio drain on the other core / on the same core", ratio, "x", "<= 1.5x", verdict(spread(ratio)[0] <= 1.5), digits=2)
PY
