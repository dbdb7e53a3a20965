#!/usr/bin/env bash
# Builds and runs Examples/swift-trace-self.swift against liblivetrace.so in
# $1 (default .build/release, after `make lib`). Swift functions get their
# entry sites from LLVM IR: swiftc -emit-ir, add "patchable-function-entry"="5"
# to every function attribute group, compile the IR with clang.
set -euo pipefail
cd "$(dirname "$0")/.."
LIB="$(cd "${1:-.build/release}" && pwd)"
OUT="${2:-$(mktemp -d)}"
swiftc -O -emit-ir -import-objc-header Sources/CLiveTraceShims/include/livetrace.h \
  Examples/swift-trace-self.swift -module-name main -o "$OUT/main.ll"
sed -E 's/^(attributes #[0-9]+ = \{ )/\1"patchable-function-entry"="5" /' "$OUT/main.ll" > "$OUT/main-sites.ll"
clang -c -O2 "$OUT/main-sites.ll" -o "$OUT/main.o"
swiftc "$OUT/main.o" -o "$OUT/swift-trace-self" -L "$LIB" -llivetrace -Xlinker -rpath -Xlinker "$LIB"
"$OUT/swift-trace-self"
