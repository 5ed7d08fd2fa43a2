#!/usr/bin/env bash
# bench/routing: what splitbrain costs code outside any slave's context (issue 9 point 9): routed
# attribute access, captured names, the audit hook; in one run, interleaved. Uses
# SPLITBRAIN_BUILD_DIR (default build/). Args go to bench_routing.py (--quick, --smoke, --json,
# --rounds N).
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
exec "$root/.venv/bin/python" "$here/bench_routing.py" "$@"
