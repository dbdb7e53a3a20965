#!/usr/bin/env bash
# Full-dynamic patching (issue 10): relocate and restore every function of a
# Swift shared object in one batch each, analysis and stubs included
# (livetrace-reloc-bench), 5 runs: median and spread of the total per function.
# Then uftrace's start-up with -P . (dynamic patching of every function) on
# the toolchain's swift-format, beside the same program run plain. swift-format
# itself is a PIE executable, which glibc will not dlopen: our batch runs on
# libFoundation.so of the same toolchain.
# $1: the release bin directory.
set -euo pipefail
BIN="${1:-.build/release}"
TOOLCHAIN="$(dirname "$(readlink -f "$(command -v swift)")")"
OBJECT="${RELOC_OBJECT:-$TOOLCHAIN/../lib/swift/linux/libFoundation.so}"
totals=()
for run in 1 2 3 4 5; do
    out="$("$BIN/livetrace-reloc-bench" "$OBJECT")"
    [ "$run" = 1 ] && echo "$out" | head -4
    totals+=("$(echo "$out" | sed -n 's/^total us\/function.*: //p')")
done
printf '%s\n' "${totals[@]}" | sort -g | awk '{v[NR]=$1} END {printf "livetrace relocate+restore, us/function (5 runs): median %s, min %s, max %s\n", v[3], v[1], v[5]}'

SF="$TOOLCHAIN/swift-format"
if command -v uftrace >/dev/null && [ -x "$SF" ]; then
    dir="$(mktemp -d)"
    trap 'rm -rf "$dir"' EXIT
    start=$(date +%s%N); "$SF" --version >/dev/null; plain=$(( $(date +%s%N) - start ))
    start=$(date +%s%N)
    if uftrace record -P . -d "$dir/data" "$SF" --version >"$dir/out" 2>&1; then
        traced=$(( $(date +%s%N) - start ))
        echo "uftrace -P . swift-format --version: $(( traced / 1000000 )) ms vs $(( plain / 1000000 )) ms plain"
    else
        echo "uftrace -P . swift-format --version: failed ($(grep -m1 -o 'terminated by signal.*' "$dir/out" || tail -1 "$dir/out"))"
    fi
fi
