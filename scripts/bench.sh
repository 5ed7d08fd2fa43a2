#!/usr/bin/env bash
# Runs every benchmark against its peer in the same run and prints the ratios (bench/run.sh; --quick
# for the ≈ 2 minute version).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export SPLITBRAIN_BUILD_DIR="${SPLITBRAIN_BUILD_DIR:-$root/build}"
exec "$root/bench/run.sh" "$@"
