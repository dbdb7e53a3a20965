#!/usr/bin/env python3
"""Writes the assembly of an object with N instrumented functions, the way
gcc -O1 -fpatchable-function-entry=5 emits each one (five 1-byte nops at the
entry, the entry's address in __patchable_function_entries), plus N/10
functions without a site. Assembling this takes seconds where compiling the
equivalent C takes minutes; the linked ELF has the same structure.

The functions are spread over files of 5,000 (the assembler is quadratic in
functions per file), and each file keeps one list section for its entries
(gcc emits one link-order section per function; linked, both give one
__patchable_function_entries section).

usage: discovery-generate.py N DIRECTORY   (writes DIRECTORY/part-K.s)"""
import os
import sys

count = int(sys.argv[1])
directory = sys.argv[2]
per_file = 5000
os.makedirs(directory, exist_ok=True)
for part, first in enumerate(range(0, count, per_file)):
    last = min(first + per_file, count)
    with open(os.path.join(directory, f"part-{part}.s"), "w") as out:
        out.write(f'\t.file\t"discovery-bench-{part}.c"\n\t.text\n')
        for i in range(first, last):
            out.write(f"""\t.globl\tf{i}
\t.type\tf{i}, @function
f{i}:
.LPFE{i}:
\tnop
\tnop
\tnop
\tnop
\tnop
\tleal\t{i % 1000}(%rdi,%rdi,2), %eax
\tret
\t.size\tf{i}, .-f{i}
""")
        for i in range(first // 10, last // 10):
            out.write(f"""\t.globl\tplain{i}
\t.type\tplain{i}, @function
plain{i}:
\tleal\t{i % 1000}(%rdi), %eax
\tret
\t.size\tplain{i}, .-plain{i}
""")
        out.write('\t.section\t__patchable_function_entries,"aw",@progbits\n\t.align 8\n')
        for i in range(first, last):
            out.write(f"\t.quad\t.LPFE{i}\n")
        out.write('\t.section\t.note.GNU-stack,"",@progbits\n')
