#!/usr/bin/env bash
# The README's main command: builds an example program with entry sites and
# shows what LiveTrace finds in it.
set -euo pipefail
bin="${1:-.build/release}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
gcc -O2 -fpatchable-function-entry=5 -g -o "$work/fib" Examples/fib.c
echo "== livetrace list $work/fib"
"$bin/livetrace" list "$work/fib"
