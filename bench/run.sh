#!/usr/bin/env bash
# Every benchmark against its peers in one run, then issue 11's figures as ratios (bench/summary.py).
#
#   bench/run.sh           bench/face, bench/wire, bench/kernel, bench/routing in full (≈ 7 min on the 2-vCPU machine)
#   bench/run.sh --quick   bench/face --quick, bench/kernel's cold starts only, bench/routing --quick (≈ 2.5 min)
#
# Uses SPLITBRAIN_BUILD_DIR (default build/). `make bench` runs it after setting up.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
export SPLITBRAIN_BUILD_DIR="${SPLITBRAIN_BUILD_DIR:-$root/build}"
export PYTHONPATH="$SPLITBRAIN_BUILD_DIR/python${PYTHONPATH:+:$PYTHONPATH}"
export JUPYTER_PATH="$SPLITBRAIN_BUILD_DIR/share/jupyter" SPLITBRAIN_AGENT="$SPLITBRAIN_BUILD_DIR/agent/splitbrain-agent"
quick=0
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        *) echo "usage: bench/run.sh [--quick]" >&2; exit 2 ;;
    esac
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
if ((quick)); then
    echo "== bench/face --quick"
    "$here/face/run.sh" --quick --json | tee "$out/face.jsonl" | grep -v '^{'
    echo "== bench/kernel (cold starts and first cell only)"
    "$here/kernel/run.sh" kernel --starts 3 --executes 30 --json | tee "$out/kernel.jsonl" | grep -v '^{'
    echo "== bench/routing --quick"
    "$here/routing/run.sh" --quick --json | tee "$out/routing.jsonl" | grep -v '^{'
else
    echo "== bench/face"
    "$here/face/run.sh" --json | tee "$out/face.jsonl" | grep -v '^{'
    echo "== bench/wire"
    "$here/wire/run.sh"
    echo "== bench/kernel"
    "$here/kernel/run.sh" --json -- --json | tee "$out/kernel.jsonl" | grep -v '^{'
    echo "== bench/routing"
    "$here/routing/run.sh" --json | tee "$out/routing.jsonl" | grep -v '^{'
fi
echo "== issue 11"
"$root/.venv/bin/python" "$here/summary.py" "$out/face.jsonl" "$out/kernel.jsonl" "$out/routing.jsonl"
