#!/usr/bin/env bash
# bench/wire: bare cppzmq vs the agent (through the C++ channel) vs RPyC classic, in one run; then the
# wake-ups per round trip and the breakdown of one (wakeups.py). Uses SPLITBRAIN_BUILD_DIR (default
# build/) for splitbrain-bench-wire and the agent. Args go to bench_wire.py (--smoke: each workload
# once; --json: figures as JSON lines too); --smoke also to wakeups.py.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export SPLITBRAIN_BUILD_DIR="${SPLITBRAIN_BUILD_DIR:-$root/build}"
# The client key of wakeups.py goes to a private directory, not the user's ~/.config.
config=$(mktemp -d)
trap 'rm -rf "$config"' EXIT
export SPLITBRAIN_CONFIG="${SPLITBRAIN_CONFIG:-$config}"
"$root/.venv/bin/python" "$here/bench_wire.py" "$@"
smoke=()
for arg in "$@"; do
  if [ "$arg" = --smoke ]; then smoke=(--smoke); fi
done
"$root/.venv/bin/python" "$here/wakeups.py" "${smoke[@]}"
