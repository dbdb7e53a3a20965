#!/usr/bin/env bash
# Reading a large trace (issue 12): `livetrace report` and `livetrace replay
# > /dev/null` over a recorded trace of READ_CALLS calls of one function
# (2 events a call; default 50 M calls, 100 M events, 1.5 GiB; QUICK=1 in
# run.sh: 2 M), side by side with `uftrace report` / `uftrace replay` on a
# uftrace recording of the same program and calls. $1: the release build.
#
# For each command: events per second (2 * READ_CALLS / wall time) and peak
# memory (/usr/bin/time's maximum resident set size), as the median and the
# spread (min..max) of READ_REPEAT runs (default BENCH_RUNS, 7), the
# commands alternating run by run so a slow moment of the machine hits all
# of them; beside the wall-time rate, the rate by CPU time (user + system),
# which a loaded machine does not lower (2 cores shared: the wall-time rate
# of a replay halves under load while its CPU time stays). Then livetrace at
# a tenth of the calls: reading is one pass with memory bounded by call
# depth and functions, so its peak memory should not grow with the trace.
# Targets (issue 12): report >= 30 M events/s, replay >= 10 M events/s.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(cd "${1:-.build/release}" && pwd)"
CALLS="${READ_CALLS:-50000000}"
REPEAT="${READ_REPEAT:-${BENCH_RUNS:-7}}"
SMALL=$((CALLS / 10))
if ! command -v uftrace >/dev/null; then
    echo "reading-bench: installing uftrace"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y -qq uftrace >/dev/null
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
REPO="$(pwd)"
gcc -O2 -pg -mfentry "$REPO/Benchmarks/uftrace-fixture.c" -o "$WORK/pg"
cd "$WORK"
"$BIN/livetrace" record -d "$WORK/lt" -- ./pg "$CALLS" >/dev/null 2>"$WORK/record.log" || { cat "$WORK/record.log" >&2; exit 1; }
"$BIN/livetrace" record -d "$WORK/lt-small" -- ./pg "$SMALL" >/dev/null 2>"$WORK/record.log" || { cat "$WORK/record.log" >&2; exit 1; }
uftrace record -d "$WORK/uft" ./pg "$CALLS" >/dev/null 2>"$WORK/record.log" || { cat "$WORK/record.log" >&2; exit 1; }
EVENTS=$((2 * CALLS + 2))

# measure NAME COMMAND...: appends "seconds kilobytes user system" of one
# run to NAME.runs.
measure() {
    local name="$1"
    shift
    /usr/bin/time -f "%e %M %U %S" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/stderr" || { cat "$WORK/stderr" >&2; exit 1; }
    cat "$WORK/time" >>"$WORK/$name.runs"
}

for _ in $(seq "$REPEAT"); do
    measure lt-report "$BIN/livetrace" report -d "$WORK/lt"
    measure uft-report uftrace report -d "$WORK/uft"
    measure lt-replay "$BIN/livetrace" replay -d "$WORK/lt"
    measure uft-replay uftrace replay -d "$WORK/uft"
    measure lt-report-small "$BIN/livetrace" report -d "$WORK/lt-small"
    measure lt-replay-small "$BIN/livetrace" replay -d "$WORK/lt-small"
done

# summary NAME EVENTS [LABEL TARGET]: "median M ev/s (min..max), peak median
# MB (min..max)"; with LABEL, also rows of BENCHMARKS.md (run.sh's
# BENCH_ROWS, Benchmarks/benchlib.py): the rate against TARGET M events/s
# (none when TARGET is empty) and the peak memory.
summary() {
    python3 - "$WORK/$1.runs" "$2" "${3:-}" "${4:-}" <<'PY'
import os, statistics, sys
runs = [tuple(map(float, line.split())) for line in open(sys.argv[1]) if line.strip()]
events = int(sys.argv[2])
label, target = sys.argv[3], sys.argv[4]
rates = sorted(events / max(r[0], 1e-3) / 1e6 for r in runs)
cpu_rates = sorted(events / max(r[2] + r[3], 1e-3) / 1e6 for r in runs)
peaks = sorted(r[1] / 1024 for r in runs)
rate, cpu_rate, peak = statistics.median(rates), statistics.median(cpu_rates), statistics.median(peaks)
print("%7.1f M events/s (%.1f..%.1f)   by CPU time %7.1f (%.1f..%.1f)   peak %7.1f MB (%.1f..%.1f)" % (
    rate, rates[0], rates[-1], cpu_rate, cpu_rates[0], cpu_rates[-1], peak, peaks[0], peaks[-1]))
if label and os.environ.get("BENCH_ROWS"):
    with open(os.environ["BENCH_ROWS"], "a") as out:
        goal = f">= {target} M events/s" if target else ""
        verdict = ("met" if rate >= float(target) else "NOT met") if target else ""
        out.write(f"{label} ({events} events)\t{rate:.1f}\t{rates[0]:.1f}-{rates[-1]:.1f}\tM events/s\t{goal}\t{verdict}\n")
        out.write(f"{label}: peak memory ({events} events)\t{peak:.1f}\t{peaks[0]:.1f}-{peaks[-1]:.1f}\tMB\t\t\n")
        out.write(f"{label}, by CPU time ({events} events)\t{cpu_rate:.1f}\t{cpu_rates[0]:.1f}-{cpu_rates[-1]:.1f}\tM events/s\t\t\n")
PY
}
echo "reading-bench: $EVENTS events ($CALLS calls of one function), median and spread of $REPEAT alternating runs"
printf "  livetrace report          %s\n" "$(summary lt-report $EVENTS "livetrace report" 30)"
printf "  uftrace report            %s\n" "$(summary uft-report $EVENTS "uftrace report")"
printf "  livetrace replay          %s\n" "$(summary lt-replay $EVENTS "livetrace replay > /dev/null" 10)"
printf "  uftrace replay            %s\n" "$(summary uft-replay $EVENTS "uftrace replay > /dev/null")"
printf "  livetrace report  (1/10)  %s\n" "$(summary lt-report-small $((2 * SMALL + 2)) "livetrace report, a tenth of the calls")"
printf "  livetrace replay  (1/10)  %s\n" "$(summary lt-replay-small $((2 * SMALL + 2)) "livetrace replay, a tenth of the calls")"
