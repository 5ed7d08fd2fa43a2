#!/usr/bin/env bash
# bench/kernel: splitbrain-kernel vs ipykernel (cold start, execute round trip) and what %%slave
# costs (bench_slave.py), in one run. Uses SPLITBRAIN_BUILD_DIR (default build/) for the kernelspec.
#
#   run.sh [KERNEL ARGS] [-- SLAVE ARGS]   both; KERNEL ARGS to bench_kernel.py, SLAVE ARGS to bench_slave.py
#   run.sh kernel [ARGS]                   bench_kernel.py only
#   run.sh slave [ARGS]                    bench_slave.py only
#   run.sh stress [ARGS]                   stress_interrupt.py only (not part of the default run)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export SPLITBRAIN_BUILD_DIR="${SPLITBRAIN_BUILD_DIR:-$root/build}"
export JUPYTER_PATH="$SPLITBRAIN_BUILD_DIR/share/jupyter"
python="$root/.venv/bin/python"
case "${1:-}" in
    kernel) shift; exec "$python" "$here/bench_kernel.py" "$@" ;;
    stress) shift; exec "$python" "$here/stress_interrupt.py" "$@" ;;
    slave) shift; exec "$python" "$here/bench_slave.py" "$@" ;;
esac
kernel_args=() slave_args=()
while (($#)); do
    if [[ $1 == -- ]]; then
        shift
        slave_args=("$@")
        break
    fi
    kernel_args+=("$1")
    shift
done
"$python" "$here/bench_kernel.py" ${kernel_args[@]+"${kernel_args[@]}"}
"$python" "$here/bench_slave.py" ${slave_args[@]+"${slave_args[@]}"}
