#!/usr/bin/env python3
"""Compares per-function call counts: livetrace report --json against the
counting __fentry__ (fentry_count.c) of the same -pg binary, and prints
uftrace's counts beside them (informational: uftrace is known to miscount
around longjmp).

usage: compare_counts.py LABEL LIVETRACE_JSON REFERENCE_COUNTS BINARY [UFTRACE_REPORT]
Exit status 0 when every function's count is identical, 1 otherwise."""
import json, subprocess, sys

label, live_json, reference_path, binary = sys.argv[1:5]
uftrace_path = sys.argv[5] if len(sys.argv) > 5 else None

live = {}
for f in json.load(open(live_json))["functions"]:
    live[f["function"]] = live.get(f["function"], 0) + f["calls"]

# Symbols of the binary: link-time address -> name (PIE: = file offset of .text
# in these binaries, whose first PT_LOAD maps offset 0 at address 0).
symbols = {}
for line in subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[1] in "tTwW":
        symbols[int(parts[0], 16)] = parts[2]

reference, unknown = {}, 0
for line in open(reference_path):
    path, offset, count = line.split()
    if path == "dropped":
        if int(count): sys.exit(f"{label}: the counting __fentry__ dropped {count} calls")
        continue
    if not path.endswith(binary.split("/")[-1]):
        continue
    ret = int(offset, 16)
    # gcc PIE: call *__fentry__@GOTPCREL(%rip), 6 bytes; clang: call
    # __fentry__@plt, 5 bytes; endbr64 (4) may precede either.
    name = symbols.get(ret - 6) or symbols.get(ret - 5) or symbols.get(ret - 10) or symbols.get(ret - 9)
    if name is None:
        unknown += 1
        continue
    reference[name] = reference.get(name, 0) + int(count)

uftrace = {}
if uftrace_path:
    for line in open(uftrace_path):
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            uftrace[parts[1]] = int(parts[0])

names = sorted(set(live) | set(reference))
mismatches = [n for n in names if live.get(n, 0) != reference.get(n, 0)]
uftrace_wrong = [n for n in reference if uftrace and uftrace.get(n, 0) != reference[n]]
total = sum(reference.values())
print(f"{label}: {len(reference)} functions, {total} calls counted by __fentry__; "
      f"livetrace differs on {len(mismatches)}"
      + (f"; uftrace differs on {len(uftrace_wrong)} ({sum(uftrace.get(n, 0) for n in reference)} calls)" if uftrace else "")
      + (f"; {unknown} return addresses without a symbol" if unknown else ""))
for n in mismatches[:20]:
    print(f"  {n}: livetrace {live.get(n, 0)}, __fentry__ {reference.get(n, 0)}")
sys.exit(1 if mismatches or not reference else 0)
