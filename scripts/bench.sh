#!/usr/bin/env bash
# Runs every benchmark against its peer in the same run and prints the ratios.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PYTHONPATH="$root/build/python" JUPYTER_PATH="$root/build/share/jupyter"
export SPLITBRAIN_AGENT="$root/build/agent/splitbrain-agent" SPLITBRAIN_BUILD_DIR="$root/build"
for b in bench/*/run.sh; do
  [ -x "$b" ] || continue
  echo "== $b"
  "$b"
done
