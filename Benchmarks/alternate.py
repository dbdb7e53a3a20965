#!/usr/bin/env python3
"""Alternating runs: the timing harness of every `make bench` script.

    alternate.py [--runs N] [--json FILE] [--clean PATH]... [--cwd DIR] [--quiet]
                 NAME -- COMMAND ARGS... [::: NAME -- COMMAND ARGS...]...

Runs the commands in rounds: each round runs every command once, in an order
that rotates from round to round (round r starts with command r mod k), so
that a slow minute of a shared machine falls on every side alike. No shell
runs between the clock readings: the command is exec'd directly. Before each
run the --clean paths are removed (a trace directory left by the previous
run), outside the timed part.

Per command it reports, over the N runs, the median, the interquartile range
(q1-q3) and the extremes (min-max) of:
  wall  elapsed time (time.perf_counter around spawn and wait), ms
  cpu   user + system time of the child and its descendants (getrusage), ms
and for every command after the first its "added" time: the median (and
spread) of the per-round differences from the first command, which is the
baseline. Never the best run: the best hides what a user lives with.

--quiet prints nothing (for scripts that compute their figures from --json).
--json FILE appends one JSON object per command (name, runs, wall and cpu
lists in ms, per-round added lists) so a report writer can build tables.
"""
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time


def quartiles(values):
    """(min, q1, median, q3, max) by linear interpolation (numpy's default)."""
    s = sorted(values)
    def at(p):
        k = (len(s) - 1) * p
        lo = int(k)
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (k - lo)
    return s[0], at(0.25), at(0.5), at(0.75), s[-1]


def describe(values):
    lo, q1, med, q3, hi = quartiles(values)
    return f"{med:9.1f}  IQR {q1:8.1f}-{q3:<8.1f}  range {lo:8.1f}-{hi:<8.1f}"


def parse(argv):
    runs, json_path, clean, cwd, quiet = 9, None, [], None, False
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        flag = argv[i]
        if flag == "--runs":
            runs = int(argv[i + 1]); i += 2
        elif flag == "--json":
            json_path = argv[i + 1]; i += 2
        elif flag == "--clean":
            clean.append(argv[i + 1]); i += 2
        elif flag == "--quiet":
            quiet = True; i += 1
        elif flag == "--cwd":
            cwd = argv[i + 1]; i += 2
        else:
            sys.exit(f"alternate.py: unknown option {flag}")
    commands, current = [], []
    for word in argv[i:] + [":::"]:
        if word == ":::":
            if current:
                if len(current) < 3 or current[1] != "--":
                    sys.exit("alternate.py: each command is NAME -- COMMAND ARGS...")
                commands.append((current[0], current[2:]))
            current = []
        else:
            current.append(word)
    if not commands:
        sys.exit("alternate.py: no command")
    if runs < 1:
        sys.exit("alternate.py: --runs must be at least 1")
    return runs, json_path, clean, cwd, quiet, commands


def run_once(argv, cwd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = (time.perf_counter() - start) * 1e3
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1e3
    if result.returncode != 0:
        sys.stderr.write(result.stderr.decode(errors="replace"))
        sys.exit(f"alternate.py: {' '.join(argv)} exited with {result.returncode}")
    return wall, cpu


def main():
    runs, json_path, clean, cwd, quiet, commands = parse(sys.argv[1:])
    wall = {name: [] for name, _ in commands}
    cpu = {name: [] for name, _ in commands}
    for r in range(runs):
        order = commands[r % len(commands):] + commands[:r % len(commands)]
        for name, argv in order:
            for path in clean:
                shutil.rmtree(path, ignore_errors=True)
            w, c = run_once(argv, cwd)
            wall[name].append(w)
            cpu[name].append(c)
    base = commands[0][0]
    if not quiet:
        print(f"  {runs} alternating runs, ms: median, IQR, range")
        for name, _ in commands:
            print(f"  {name:<34} wall {describe(wall[name])}")
            print(f"  {'':<34} cpu  {describe(cpu[name])}")
            if name != base:
                added = [a - b for a, b in zip(wall[name], wall[base])]
                added_cpu = [a - b for a, b in zip(cpu[name], cpu[base])]
                print(f"  {'':<34} added wall {describe(added)}")
                print(f"  {'':<34} added cpu  {describe(added_cpu)}")
    if json_path:
        with open(json_path, "a") as out:
            for name, argv in commands:
                record = {"name": name, "argv": argv, "runs": runs, "wall_ms": wall[name], "cpu_ms": cpu[name],
                          "added_wall_ms": [a - b for a, b in zip(wall[name], wall[base])],
                          "added_cpu_ms": [a - b for a, b in zip(cpu[name], cpu[base])], "baseline": base}
                out.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
