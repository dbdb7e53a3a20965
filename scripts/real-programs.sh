#!/usr/bin/env bash
# Real programs nobody here wrote, recorded by `livetrace record` (issue 5):
# Lua 5.4 from Debian's source package, built three ways, running a
# deterministic workload (scripts/real-programs/workload.lua: recursion,
# table.sort with a Lua comparator, errors caught by pcall — the C side
# leaves frames by longjmp —, string library, coroutines).
#
#   gcc   -O0 -pg -mfentry                  call-fentry-got sites
#   gcc   -O0 -fpatchable-function-entry=5  nop1x5 sites
#   clang -O0 -pg -mfentry                  call-fentry sites (through the PLT)
#   clang -O0 -fpatchable-function-entry=5  nop5 sites
#
# For each build: the traced output must equal the untraced output, and the
# per-function call counts of `livetrace report --json` must equal an
# independent count: a counting __fentry__ (real-programs/fentry_count.c,
# preloaded into the -pg build of the same compiler; -O0 keeps the calls of
# both builds of one compiler the same, no inlining). uftrace's counts of the
# gcc -pg build are printed beside them.
#
# Not part of .ci/run (it downloads a source package and takes minutes).
# $1: the build holding livetrace and its shim (default .build/release).
# Exit status 0 when every comparison holds.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(cd "${1:-.build/release}" && pwd)"
HERE="$(pwd)/scripts/real-programs"
WORK="${REAL_PROGRAMS_WORK:-$(mktemp -d)}"
mkdir -p "$WORK"
echo "real-programs: working in $WORK"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
for tool in dpkg-source:dpkg-dev uftrace:uftrace clang:clang; do
    command -v "${tool%%:*}" >/dev/null || $SUDO apt-get install -y -qq "${tool##*:}" >/dev/null
done

# 1. The source, through a private sources list with a deb-src line (the
#    system's lists are left alone).
if [ ! -d "$WORK/lua" ]; then
    mkdir -p "$WORK/apt/lists/partial"
    echo "deb-src http://deb.debian.org/debian bookworm main" >"$WORK/apt/sources.list"
    APT=(-o "Dir::Etc::SourceList=$WORK/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$WORK/apt/lists")
    apt-get "${APT[@]}" update -qq
    (cd "$WORK" && apt-get "${APT[@]}" source --download-only lua5.4 >/dev/null 2>&1)
    (cd "$WORK" && dpkg-source -x lua5.4_*.dsc lua >/dev/null)
    # What debian/rules generates before building (the module path's triplet).
    printf '#ifndef _LUA_DEB_MULTIARCH_\n#define _LUA_DEB_MULTIARCH_\n#define DEB_HOST_MULTIARCH "x86_64-linux-gnu"\n#endif\n' \
        >"$WORK/lua/src/lua5.4-deb-multiarch.h"
fi

# 2. Three builds of the interpreter (every .c of src/ but luac.c), and the
#    counting __fentry__.
build() {
    local name="$1" compiler="$2"
    shift 2
    local sources=()
    for file in "$WORK"/lua/src/*.c; do [ "$(basename "$file")" = luac.c ] || sources+=("$file"); done
    # Lua's sources of run-to-run variation, fixed through its own
    # configuration macros: the string-hash seed (time and addresses),
    # table.sort's pivot randomization (clock and time), and the API's
    # string cache, whose set is chosen by the C string's address
    # (STRCACHE_N 1: one set, so a string's address, which moves with the
    # address layout and with the size of the environment above the stack,
    # no longer decides whether luaS_new finds it or calls luaS_newlstr ->
    # internshrstr -> luaS_hash: one call more or less of each, in one run
    # of six of the clang builds). What Lua still hashes by address (pointer
    # keys) is fixed by running every program without address-space
    # randomization (NORANDOM).
    "$compiler" -O0 -g -DLUA_COMPAT_5_3 -DLUA_USE_LINUX '-Dluai_makeseed(L)=0' '-Dl_randomizePivot()=0' \
        -DSTRCACHE_N=1 -DSTRCACHE_M=2 \
        "$@" "${sources[@]}" -o "$WORK/lua-$name" -lm -ldl
}
NORANDOM=(setarch "$(uname -m)" -R)
build gcc-pg gcc -pg -mfentry
build gcc-nop gcc -fpatchable-function-entry=5
build clang-pg clang -pg -mfentry
build clang-nop clang -fpatchable-function-entry=5
gcc -O2 -shared -fPIC -mgeneral-regs-only "$HERE/fentry_count.c" -o "$WORK/fentry_count.so"
cd "$WORK"
cp "$HERE/workload.lua" "$WORK/workload.lua"

# 3. The reference: untraced output, counts by the counting __fentry__.
"${NORANDOM[@]}" ./lua-gcc-nop workload.lua >untraced.out
for compiler in gcc clang; do
    FENTRY_COUNT_OUT="$WORK/reference-$compiler.counts" LD_PRELOAD="$WORK/fentry_count.so" "${NORANDOM[@]}" ./lua-$compiler-pg workload.lua >reference.out
    cmp untraced.out reference.out
done
rm -rf uftrace.data
"${NORANDOM[@]}" uftrace record --no-libcall -d uftrace.data ./lua-gcc-pg workload.lua >uftrace.out 2>/dev/null || true
uftrace report -d uftrace.data -f call 2>/dev/null | awk 'NF == 2 && $1 ~ /^[0-9]+$/' >uftrace.counts || true

# 4. livetrace on each build.
status=0
for name in gcc-pg gcc-nop clang-pg clang-nop; do
    rm -rf "trace-$name"
    # A long writer wait: on a loaded machine the drain may be starved for
    # more than the default 20 ms, and a lost event would spoil the count.
    "${NORANDOM[@]}" "$BIN/livetrace" record --wait 2000 -d "trace-$name" -- "./lua-$name" workload.lua >"traced-$name.out" 2>"record-$name.err"
    tail -1 "record-$name.err"
    if ! cmp -s untraced.out "traced-$name.out"; then
        echo "real-programs: lua-$name: traced output differs from the untraced output"
        status=1
    fi
    "$BIN/livetrace" report -d "trace-$name" --json >"trace-$name.json"
    uftrace_arg=()
    [ "$name" = gcc-pg ] && [ -s uftrace.counts ] && uftrace_arg=(uftrace.counts)
    compiler="${name%%-*}"
    python3 "$HERE/compare_counts.py" "lua-$name" "trace-$name.json" "reference-$compiler.counts" "./lua-$compiler-pg" "${uftrace_arg[@]}" || status=1
done
[ "$status" = 0 ] && echo "real-programs: every build: output identical, every function's call count identical to the counting __fentry__"
exit "$status"
