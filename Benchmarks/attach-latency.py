"""The rounds of Benchmarks/attach-latency.sh: attach to PID, wait for the
recording line, wait 200 ms, SIGINT, read the summary.

usage: attach-latency.py LIVETRACE PID RUNS WORKDIR"""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import describe, row, spread, verdict  # noqa: E402

livetrace, pid, runs, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
attach_ms, detach_ms, exit_ms, sites = [], [], [], ""
for round_ in range(runs):
    trace = os.path.join(work, f"t{round_}")
    start = time.monotonic()
    run = subprocess.Popen([livetrace, "record", "-p", pid, "-d", trace], stderr=subprocess.PIPE, text=True)
    line = run.stderr.readline()
    if "recording pid" not in line:
        sys.exit(f"attach-latency: round {round_}: {line}{run.stderr.read()}")
    attach_ms.append((time.monotonic() - start) * 1000)
    time.sleep(0.2)
    stop = time.monotonic()
    run.send_signal(signal.SIGINT)
    rest = run.stderr.read()
    run.wait()
    exit_ms.append((time.monotonic() - stop) * 1000)
    found = re.search(r"detach ([0-9.]+) ms\): .*?(\d+) functions, (\d+) events lost", rest)
    if run.returncode != 0 or not found:
        sys.exit(f"attach-latency: round {round_}: status {run.returncode}: {rest}")
    detach_ms.append(float(found.group(1)))
    subprocess.run(["rm", "-rf", trace])

print(f"attach-latency: record -p on a program with 10,000 traced functions, {runs} rounds, ms: median (range)")
print(f"  command -> recording (every site patched)   {describe(attach_ms)}")
print(f"  detach request -> sites restored, rings out {describe(detach_ms)}")
print(f"  SIGINT -> livetrace exited, trace finished  {describe(exit_ms)}")
row("attach, record -p with 10,000 traced functions: command to recording", attach_ms, "ms", "< 50 ms", verdict(spread(attach_ms)[0] < 50))
row("detach, record -p with 10,000 traced functions: request to sites restored", detach_ms, "ms", "< 50 ms", verdict(spread(detach_ms)[0] < 50))
row("detach, record -p with 10,000 traced functions: SIGINT to livetrace's exit", exit_ms, "ms")
