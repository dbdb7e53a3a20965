"""Figures of the `make bench` scripts: median and spread of alternating
runs (Benchmarks/alternate.py --json), and the rows of BENCHMARKS.md.

A row (BENCH_ROWS, one per line, tab-separated): figure name, median, range
"min-max", unit, target, verdict ("met", "NOT met" or empty).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from alternate import quartiles  # noqa: E402


def load(path):
    """name -> record of an alternate.py --json file."""
    records = {}
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            records[record["name"]] = record
    return records


def spread(values):
    lo, q1, med, q3, hi = quartiles(values)
    return med, lo, hi


def describe(values, digits=1):
    med, lo, hi = spread(values)
    return f"{med:.{digits}f} (range {lo:.{digits}f}-{hi:.{digits}f})"


def marginal_ns(records, big, small, base_big, base_small, count):
    """Per-round added ns per call: ((T(N) - T(n)) - (B(N) - B(n))) / (N - n),
    start-up costs cancelling; wall times of the same round."""
    t_big, t_small = records[big]["wall_ms"], records[small]["wall_ms"]
    b_big, b_small = records[base_big]["wall_ms"], records[base_small]["wall_ms"]
    return [((tb - ts) - (bb - bs)) * 1e6 / count for tb, ts, bb, bs in zip(t_big, t_small, b_big, b_small)]


def marginal_cpu_ns(records, big, small, base_big, base_small, count):
    """The same per-round difference on CPU time (user + system of every
    process of the run: program, tracer, drain): the work the recording
    costs, without the time spent waiting for a CPU. Shown beside the wall
    figure (which the targets use), never instead of it."""
    t_big, t_small = records[big]["cpu_ms"], records[small]["cpu_ms"]
    b_big, b_small = records[base_big]["cpu_ms"], records[base_small]["cpu_ms"]
    return [((tb - ts) - (bb - bs)) * 1e6 / count for tb, ts, bb, bs in zip(t_big, t_small, b_big, b_small)]


def row(name, values, unit, target="", verdict="", digits=1):
    med, lo, hi = spread(values)
    line = f"{name}\t{med:.{digits}f}\t{lo:.{digits}f}-{hi:.{digits}f}\t{unit}\t{target}\t{verdict}\n"
    path = os.environ.get("BENCH_ROWS")
    if path:
        with open(path, "a") as out:
            out.write(line)


def ratios(numerators, denominators):
    """Per-round ratios; a round whose denominator is not positive (start-up
    jitter larger than the measured cost) has no ratio and is left out."""
    return [n / d for n, d in zip(numerators, denominators) if d > 0] or [float("nan")]


def verdict(ok):
    return "met" if ok else "NOT met"
