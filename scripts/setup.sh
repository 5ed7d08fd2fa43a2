#!/usr/bin/env bash
# Installs what is missing (Debian packages, the .venv and its pinned Python packages), builds into
# build/ and installs into .venv. Idempotent: a second run with nothing changed takes seconds.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

debian_packages=(
  build-essential cmake ninja-build pkg-config
  xeus-dev xeus-python-dev libxeus-python0 python3-xeus-python-shell
  cppzmq-dev libzmq3-dev nlohmann-json3-dev pybind11-dev python3-dev python3-venv
  googletest libgtest-dev
  socat iproute2 chromium
  clang libclang-rt-14-dev clang-format-14
)
missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The venv is made from Debian's CPython, never the pyenv python3 first on PATH: the kernel and the
# agent's workers embed libpython3.11.so and must share its ABI with every package they import.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.base_prefix != "/usr")' 2>/dev/null; then
  rm -rf .venv
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
req_hash=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$req_hash" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  echo "$req_hash" > .venv/.requirements.sha256
fi

if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPLITBRAIN_VENV="$root/.venv"
fi
cmake --build build
cmake --install build --prefix "$root/.venv" > /dev/null
