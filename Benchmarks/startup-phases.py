#!/usr/bin/env python3
"""Where the CPU time of `livetrace record -- PROGRAM` goes, by phase.

    startup-phases.py RUNS LIVETRACE PROGRAM [ARGS...]

Samples RUNS recordings with `perf record -g` (cpu-clock, 20 kHz, every
process and thread) and charges each sample to the first phase whose
function is on its call chain (innermost first), in the order of PHASES;
a sample on no phase is charged to its process as "other". Prints the CPU
milliseconds per run of each phase. Needs perf (Debian linux-perf).
"""
import os, re, subprocess, sys, tempfile, collections

PHASES = [  # (phase, regular expression on a symbol of the call chain)
    ("shim: site discovery", r"SiteTable.*currentProcess"),
    ("shim: patching and the rest of its start", r"livetracePreloadStart"),
    ("CLI: object capture (maps, symbols)", r"ObjectCapture.*capture"),
    ("CLI: objects.json", r"writeObjects"),
    ("CLI: program check (parse, sites)", r"ProgramCheck.*check"),
    ("CLI: ring area creation", r"RingArea.*create"),
    ("CLI: finish (last drain, summary)", r"RecordingSession.*finish"),
    ("CLI: argument parsing", r"RecordArguments.*scan|parseAsRoot"),
    ("drain thread", r"DrainThread"),
    ("dynamic loader (libraries, relocations)", r"^(_dl_|dl_main|_dl_start)"),
    ("kernel: exec", r"execve"),
    ("kernel: exit (unmapping, freeing)", r"do_exit|do_group_exit|exit_mmap"),
    ("kernel: unlink, close (freeing pages)", r"unlink|__fput|truncate"),
    ("kernel: page faults elsewhere", r"exc_page_fault"),
]

def main():
    runs, argv = int(sys.argv[1]), sys.argv[2:]
    livetrace, program = argv[0], argv[1:]
    work = tempfile.mkdtemp()
    counts = collections.Counter()
    total = 0
    for r in range(runs):
        data = os.path.join(work, f"perf{r}.data")
        subprocess.run(["perf", "record", "-q", "-F", "20000", "-g", "-o", data, "--", livetrace, "record",
                        "-d", os.path.join(work, "trace"), "--"] + program,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        script = subprocess.run(["perf", "script", "-i", data, "-F", "comm,period,ip,sym"],
                                capture_output=True, text=True).stdout
        for block in script.split("\n\n"):
            lines = [l.strip() for l in block.strip().splitlines() if l.strip()]
            if not lines:
                continue
            head = lines[0].split()
            comm, period = head[0], int(head[-1]) if head[-1].isdigit() else 0
            syms = [l.split(None, 1)[1] if " " in l else l for l in lines[1:]]
            phase = None
            for name, pattern in PHASES:
                if any(re.search(pattern, s) for s in syms):
                    phase = name
                    break
            if phase is None:
                phase = f"other ({comm})"
            counts[phase] += period
            total += period
        subprocess.run(["rm", "-rf", os.path.join(work, "trace"), os.path.join(work, "trace.old"), data])
    for name, value in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {value / runs / 1e6:7.1f} ms  {name}")
    print(f"  {total / runs / 1e6:7.1f} ms  total CPU per run ({runs} runs)")

main()
