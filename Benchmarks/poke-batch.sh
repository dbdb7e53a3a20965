#!/usr/bin/env bash
# Text poke batch size (issue 3): switch 100,000 sites on and off in one batch.
# $1: the release bin directory.
set -euo pipefail
BIN="${1:-.build/release}"
"$BIN/livetrace-poke-bench" "${POKE_SITES:-100000}" 1
