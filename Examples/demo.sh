#!/usr/bin/env bash
# The README's main command: builds an example program with entry sites,
# records it with `livetrace record` (the LD_PRELOAD shim patches its
# functions before main; the CLI drains the events), and shows the report.
set -euo pipefail
bin="${1:-.build/release}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
gcc -O2 -fpatchable-function-entry=5 -g -o "$work/fib" Examples/fib.c
echo "== livetrace list --summary $work/fib"
"$bin/livetrace" list --summary "$work/fib"
echo
echo "== livetrace record -d $work/trace -- $work/fib 25"
"$bin/livetrace" record -d "$work/trace" -- "$work/fib" 25
echo
echo "== livetrace report -d $work/trace"
"$bin/livetrace" report -d "$work/trace"
