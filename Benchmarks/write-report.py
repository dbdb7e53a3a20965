#!/usr/bin/env python3
"""Writes BENCHMARKS.md from the rows the `make bench` scripts appended
(Benchmarks/benchlib.py describes a row).

    write-report.py ROWS OUT SECONDS LOAD_BEFORE LOAD_AFTER [quick]
"""
import datetime
import os
import platform
import subprocess
import sys


def first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        text = (out.stdout or out.stderr).strip().splitlines()
        return text[0] if text else "?"
    except (OSError, subprocess.SubprocessError):
        return "not installed"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def figure(rows, name):
    """The median of the row named `name`, or None."""
    for row in rows:
        if row[0] == name:
            try:
                return float(row[1])
            except ValueError:
                return None
    return None


def floor_section(rows):
    """What the per-call targets leave an entry and an exit, beside what the
    writer alone costs on this machine (its TSC reads included): where the
    budget is below the writer, no trampoline can meet the target."""
    writer = figure(rows, "writer hot path (lt_record_entry+exit, C loop), added per call")
    tsc = figure(rows, "two TSC reads per call (rdtsc, the writer's floor), added per call")
    hooks = figure(rows, "function graph in process: hooks alone, added per call")
    if writer is None or tsc is None:
        return []
    lines = ["", "## What the per-call targets leave", "",
             f"Recording an entry and an exit costs at least the writer alone: {writer:.2f} ns per call "
             f"(`lt_record_entry` + `lt_record_exit` in a C loop, no trampoline), of which two TSC reads "
             f"(`rdtsc`, the cheapest clock here) are {tsc:.2f} ns"
             + (f"; the hooks alone (trampolines, shadow stack, no recording) add {hooks:.2f} ns." if hooks else "."),
             ""]
    for calls in ("2M", "10M"):
        uftrace = figure(rows, f"uftrace 0.13 record -P ., hot call, {calls} calls: added per call")
        if uftrace is None:
            continue
        budget = uftrace / 5
        lines.append(f"- per call, {calls} calls: 5x less than uftrace's {uftrace:.1f} ns is {budget:.1f} ns per call, "
                     + ("below the writer alone: not reachable on this machine." if budget < writer
                        else "above the writer alone."))
    uftrace_lua = figure(rows, "Lua workload: uftrace record extra time")
    lua_calls = figure(rows, "Lua workload: calls (the counting __fentry__ of real-programs.sh)")
    if uftrace_lua is not None and lua_calls and hooks:
        budget = uftrace_lua / 4
        needed = lua_calls * (writer + hooks) / 1e6
        lines.append(f"- Lua: 4x less than uftrace's {uftrace_lua:.1f} ms is {budget:.1f} ms; its {int(lua_calls):,} calls at "
                     f"the writer's and the hooks' {writer + hooks:.2f} ns cost {needed:.1f} ms before any start-up: "
                     + ("not reachable on this machine." if needed > budget else "reachable only with a start-up under "
                        f"{budget - needed:.1f} ms."))
    return lines


def main():
    rows_path, out_path, seconds, load_before, load_after = sys.argv[1:6]
    quick = len(sys.argv) > 6 and sys.argv[6] == "quick"
    rows = []
    with open(rows_path) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) >= 4:
                rows.append((fields + ["", ""])[:6])
    targets = [r for r in rows if r[4]]
    figures = [r for r in rows if not r[4]]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` ({'QUICK=1, ' if quick else ''}Benchmarks/run.sh) on {now}; "
        f"the run took {int(seconds) // 60} min {int(seconds) % 60} s.",
        "Every figure is the **median** of at least 7 alternating runs (the baseline and the",
        "measured side interleaved, the order rotating every round) with its **range**",
        "(min-max) beside it; never the best run. Ratios are taken per round (a round whose denominator is not positive, start-up jitter larger than the cost measured, has none).",
        "",
        "## Targets",
        "",
        "| target | figure (median) | range | goal | verdict |",
        "|---|---:|---|---|---|",
    ]
    for name, median, spread, unit, target, verdict in targets:
        lines.append(f"| {name} | {median}{unit if unit == 'x' else ' ' + unit} | {spread} | {target} | {verdict} |")
    lines += [
        "",
        "## Figures",
        "",
        "| figure | median | range | unit |",
        "|---|---:|---|---|",
    ]
    for name, median, spread, unit, _, _ in figures:
        lines.append(f"| {name} | {median} | {spread} | {unit} |")
    lines += floor_section(rows)
    lines += [
        "",
        "## The machine",
        "",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores (online)",
        f"- kernel: {platform.release()}",
        f"- load average (1, 5, 15 min): {load_before} before the run, {load_after} after"
        " (a shared machine: other developers' builds and tests run beside it)",
        f"- swift: {first_line(['swift', '--version'])}",
        f"- gcc: {first_line(['gcc', '--version'])}",
        f"- clang: {first_line(['clang', '--version'])}",
        f"- uftrace: {first_line(['uftrace', '--version'])}",
        "",
        "## The commands",
        "",
        "`make bench` (`QUICK=1 make bench` for the short form; `BENCH_RUNS=N` for more rounds)",
        "runs, in order:",
        "",
        "| script | what it runs |",
        "|---|---|",
        "| `Benchmarks/startup.sh` | `fib 3` (Examples/fib.c, three functions) untraced, under `uftrace record -P .` and under `livetrace record`; added wall and CPU time |",
        "| `Benchmarks/uftrace-compare.sh` | `uftrace record --no-libcall -P .` and `livetrace record` on one `-fpatchable-function-entry=5` binary calling `hot` 2M and 10M times (and N/100, so start-up cancels); then, pinned, the program on CPU 0 (`HOT_PIN_CPU`, sched_setaffinity) and `livetrace` under `taskset -c 0` or `-c 1` |",
        "| `Benchmarks/lua-compare.sh` | Debian's lua5.4 built by `scripts/real-programs.sh` (which checks the traces' exactness first), `workload.lua` untraced, under `uftrace record --no-libcall` and `livetrace record` (not in QUICK) |",
        "| `Benchmarks/record-hotpath.sh` | the writer's `lt_record_entry`/`lt_record_exit` in a C loop with a consumer thread |",
        "| `Benchmarks/tramp-cost.sh` | `livetrace-tramp-bench`: callbacks attached in process (leaf stub, generic entry, Swift closure, iterator) |",
        "| `Benchmarks/graph-cost.sh` | `livetrace-graph-bench`: the function graph in process, hooks alone and recorded with the drain |",
        "| `Benchmarks/discovery-bench.sh` | `livetrace list` on a generated object of 100k sites, beside `nm` |",
        "| `Benchmarks/poke-batch.sh` | `livetrace-poke-bench`: 100k sites switched on and off in one batch while threads call them |",
        "| `Benchmarks/reloc-batch.sh` | `livetrace-reloc-bench`: every function of the toolchain's swift-format analyzed, relocated and restored in one batch each (its segments mapped, not run), beside `uftrace record -P . swift-format --version` minus the plain run, per function, in the same rounds (uftrace 0.13 crashes it: then said so, and compared with the issue's 55 us) |",
        "",
        "The harness of whole-program runs is `Benchmarks/alternate.py`.",
        "",
    ]
    with open(out_path, "w") as out:
        out.write("\n".join(lines))


main()
