#!/usr/bin/env bash
# bench/wire: bare cppzmq vs the agent (through the C++ channel) vs RPyC classic, in one run.
# Uses SPLITBRAIN_BUILD_DIR (default build/) for splitbrain-bench-wire and the agent. Args go to
# bench_wire.py (--smoke: each workload once; --json: figures as JSON lines too).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export SPLITBRAIN_BUILD_DIR="${SPLITBRAIN_BUILD_DIR:-$root/build}"
exec "$root/.venv/bin/python" "$here/bench_wire.py" "$@"
