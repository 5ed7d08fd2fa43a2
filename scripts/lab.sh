#!/usr/bin/env bash
# JupyterLab on 127.0.0.1 with the splitbrain kernel and two local demo agents, bench-a and bench-b
# (real splitbrain-agent processes on loopback, registered in ~/.config/splitbrain/slaves.json).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state="${SPLITBRAIN_DEMO_STATE:-$root/build/demo}"
port="${SPLITBRAIN_LAB_PORT:-8888}"
# Our defaults, each dropped when the caller passes that option itself (JupyterLab refuses a
# repeated one: "root_dir only accepts one value").
defaults=()
given() { local opt; for opt in "${@:2}"; do case "$opt" in "$1"|"$1"=*) return 0 ;; esac; done; return 1; }
given --ServerApp.root_dir "$@" || given --notebook-dir "$@" || given --ServerApp.notebook_dir "$@" ||
  defaults+=(--ServerApp.root_dir="$root/notebooks")
given --port "$@" || given --ServerApp.port "$@" || defaults+=(--port "$port")
given --ip "$@" || given --ServerApp.ip "$@" || defaults+=(--ip 127.0.0.1)
given --MultiKernelManager.default_kernel_name "$@" || defaults+=(--MultiKernelManager.default_kernel_name=splitbrain)
# No .ipynb_checkpoints inside the repository's notebooks/: checkpoints go to the state directory.
# (jupyter_server falls back to the system's temporary directory if that one does not exist.)
if ! given --FileContentsManager.checkpoints_kwargs "$@"; then
  mkdir -p "$state/checkpoints"
  defaults+=(--FileContentsManager.checkpoints_kwargs="root_dir=$state/checkpoints")
fi
[ "$(id -u)" != 0 ] || given --allow-root "$@" || defaults+=(--allow-root)
exec .venv/bin/python scripts/demo_agents.py --state "$state" bench-a bench-b -- \
  .venv/bin/jupyter lab --no-browser "${defaults[@]}" "$@"
