#!/usr/bin/env bash
# bench/kernel: splitbrain-kernel vs ipykernel (cold start, execute round trip), in one run.
# Uses SPLITBRAIN_BUILD_DIR (default build/) for the kernelspec. Args go to bench_kernel.py.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export SPLITBRAIN_BUILD_DIR="${SPLITBRAIN_BUILD_DIR:-$root/build}"
export JUPYTER_PATH="$SPLITBRAIN_BUILD_DIR/share/jupyter"
"$root/.venv/bin/python" "$here/bench_kernel.py" "$@"
"$root/.venv/bin/python" "$here/bench_slave.py"
