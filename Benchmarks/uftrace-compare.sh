#!/usr/bin/env bash
# Side by side with uftrace (issue 5): overhead per call of recording the
# entry and exit of a hot function, uftrace record vs livetrace record, on the
# same binary, in the same run. $1: the release build (livetrace and its shim).
#
# Binaries (Benchmarks/uftrace-fixture.c, gcc -O2):
#   nop  -fpatchable-function-entry=5    the untraced baseline (an entry nop
#                                        costs nothing measurable), recorded by
#                                        both (uftrace patches it with -P .)
#   pg   -pg -mfentry                    recorded by both too (uftrace's usual
#                                        build; gcrt1's profiling runs as well,
#                                        which the nop baseline does not have)
# Per-call overhead is marginal, so start-up costs (site discovery, symbol
# capture, uftrace's session set-up) cancel out:
#   overhead = ((T(N) - T(n)) - (B(N) - B(n))) / (N - n)
# with T a traced run, B the untraced baseline, N = CALLS, n = CALLS/100,
# each time the best of REPEAT runs. Target: uftrace / livetrace >= 4.
# N defaults to 10M: at 2M, start-up jitter (about +-50 ms) swamps the
# per-call figure.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(cd "${1:-.build/release}" && pwd)"
CALLS="${UFTRACE_CALLS:-10000000}"
REPEAT="${UFTRACE_REPEAT:-5}"
SMALL=$((CALLS / 100))
if ! command -v uftrace >/dev/null; then
    echo "uftrace-compare: installing uftrace"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y -qq uftrace >/dev/null
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
REPO="$(pwd)"
# Every run happens in $WORK: the -pg binary writes gmon.out where it runs.
gcc -O2 -pg -mfentry "$REPO/Benchmarks/uftrace-fixture.c" -o "$WORK/pg"
gcc -O2 -fpatchable-function-entry=5 "$REPO/Benchmarks/uftrace-fixture.c" -o "$WORK/nop"
cd "$WORK"

# best_ns COUNT COMMAND...: the best wall time of REPEAT runs, in ns.
best_ns() {
    local count="$1" best="" start end elapsed
    shift
    for _ in $(seq "$REPEAT"); do
        rm -rf "$WORK/data"
        start=$(date +%s%N)
        "$@" "$count" >/dev/null 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; exit 1; }
        end=$(date +%s%N)
        elapsed=$((end - start))
        if [ -z "$best" ] || [ "$elapsed" -lt "$best" ]; then best=$elapsed; fi
    done
    echo "$best"
}

# per_call_ns NAME COMMAND...: marginal ns per call above the baseline.
baseline_big=$(best_ns "$CALLS" "$WORK/nop")
baseline_small=$(best_ns "$SMALL" "$WORK/nop")
per_call() {
    local big small
    big=$(best_ns "$CALLS" "$@")
    small=$(best_ns "$SMALL" "$@")
    awk -v b="$big" -v s="$small" -v bb="$baseline_big" -v bs="$baseline_small" -v n="$((CALLS - SMALL))" \
        'BEGIN { printf "%.1f", ((b - s) - (bb - bs)) / n }'
}

uftrace_ns=$(per_call uftrace record -d "$WORK/data" --no-libcall "$WORK/pg")
uftrace_nop_ns=$(per_call uftrace record -d "$WORK/data" --no-libcall -P . "$WORK/nop")
livetrace_pg_ns=$(per_call "$BIN/livetrace" record -d "$WORK/data" -- "$WORK/pg")
livetrace_nop_ns=$(per_call "$BIN/livetrace" record -d "$WORK/data" -- "$WORK/nop")
# The recorded counts, checked once: both tracers saw every call.
"$BIN/livetrace" record -d "$WORK/data" -- "$WORK/pg" "$CALLS" >/dev/null 2>"$WORK/summary"
live_summary=$(grep "livetrace record:" "$WORK/summary" || true)
live_calls=$("$BIN/livetrace" report -d "$WORK/data" --json | tr '{' '\n' | grep '"function" *: *"hot"' | sed 's/.*"calls" *: *\([0-9]*\).*/\1/')
rm -rf "$WORK/data"
uftrace record -d "$WORK/data" --no-libcall "$WORK/pg" "$CALLS" >/dev/null 2>&1
uf_calls=$(uftrace report -d "$WORK/data" -f call 2>/dev/null | awk '$2 == "hot" { print $1 }')

echo "uftrace-compare: entry+exit of a hot function, $CALLS calls, best of $REPEAT, overhead per call above the untraced nop binary"
echo "  uftrace 0.13 record    (-pg -mfentry binary):        ${uftrace_ns} ns/call  (recorded ${uf_calls:-?} calls of hot)"
echo "  livetrace record       (-pg -mfentry binary):        ${livetrace_pg_ns} ns/call  (recorded ${live_calls:-?} calls of hot)"
echo "    its summary: ${live_summary:-none}"
echo "  uftrace 0.13 record -P (patchable-entry binary):     ${uftrace_nop_ns} ns/call"
echo "  livetrace record       (patchable-entry binary):     ${livetrace_nop_ns} ns/call"
awk -v u="$uftrace_ns" -v l="$livetrace_pg_ns" 'BEGIN { if (l > 0) printf "  ratio uftrace / livetrace, -pg binary:             %.1fx\n", u / l }'
awk -v u="$uftrace_nop_ns" -v l="$livetrace_nop_ns" 'BEGIN { if (l > 0) printf "  ratio uftrace / livetrace, patchable-entry binary: %.1fx (target >= 4x)\n", u / l }'
