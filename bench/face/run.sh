#!/usr/bin/env bash
# bench/face: W1…W9 through `splitbrain` (inside `with box:`) vs RPyC classic, in one run.
# Uses SPLITBRAIN_BUILD_DIR (default build/) for the splitbrain package and the agent. Args go to
# bench_face.py (--smoke: each workload once on small data; --json: figures as JSON lines too).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export SPLITBRAIN_BUILD_DIR="${SPLITBRAIN_BUILD_DIR:-$root/build}"
export PYTHONPATH="$SPLITBRAIN_BUILD_DIR/python${PYTHONPATH:+:$PYTHONPATH}"
export SPLITBRAIN_AGENT="${SPLITBRAIN_AGENT:-$SPLITBRAIN_BUILD_DIR/agent/splitbrain-agent}"
# The registry and the client key go to a private directory, not the user's ~/.config.
config=$(mktemp -d)
trap 'rm -rf "$config"' EXIT
export SPLITBRAIN_CONFIG="${SPLITBRAIN_CONFIG:-$config}"
"$root/.venv/bin/python" "$here/bench_face.py" "$@"
