#!/usr/bin/env bash
# JupyterLab on 127.0.0.1 with the splitbrain kernel and two local demo agents, bench-a and bench-b
# (real splitbrain-agent processes on loopback, registered in ~/.config/splitbrain/slaves.json).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state="${SPLITBRAIN_DEMO_STATE:-$root/build/demo}"
port="${SPLITBRAIN_LAB_PORT:-8888}"
as_root=()
[ "$(id -u)" != 0 ] || as_root=(--allow-root)
exec .venv/bin/python scripts/demo_agents.py --state "$state" bench-a bench-b -- \
  .venv/bin/jupyter lab --no-browser --ip 127.0.0.1 --port "$port" \
  --ServerApp.root_dir="$root/notebooks" --MultiKernelManager.default_kernel_name=splitbrain "${as_root[@]}" "$@"
