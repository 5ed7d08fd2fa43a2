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
  nodejs
  libpython3.11-testsuite
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
req_hash=$(cat requirements.txt requirements-nodeps.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$req_hash" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
  echo "$req_hash" > .venv/.requirements.sha256
fi

if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPLITBRAIN_VENV="$root/.venv"
fi
cmake --build build
cmake --install build --prefix "$root/.venv" > /dev/null

# The JupyterLab extension (labextension/), a prebuilt extension: built with jlpm (JupyterLab's
# own yarn, from the committed yarn.lock) only when its sources or the pinned JupyterLab changed,
# and installed where the venv's JupyterLab loads it, as a Python package's data files would be.
lab_hash=$(find labextension/package.json labextension/yarn.lock labextension/.yarnrc.yml \
             labextension/tsconfig.json labextension/src labextension/style requirements.txt \
             -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
lab_build=labextension/build/splitbrain-lab
lab_dest=.venv/share/jupyter/labextensions/splitbrain-lab
if [ "$(cat "$lab_build/.sources.sha256" 2>/dev/null)" != "$lab_hash" ]; then
  echo "setup: building the JupyterLab extension (labextension/)"
  rm -rf labextension/build labextension/lib
  if ! (cd labextension && ../.venv/bin/jlpm install --immutable --mode=skip-build \
          && PATH="$root/.venv/bin:$PATH" ../.venv/bin/jlpm build) > build/labextension.log 2>&1; then
    tail -40 build/labextension.log
    echo "setup: building labextension/ failed; the whole log is build/labextension.log" >&2
    exit 1
  fi
  echo "$lab_hash" > "$lab_build/.sources.sha256"
fi
if [ "$(cat "$lab_dest/.sources.sha256" 2>/dev/null)" != "$lab_hash" ]; then
  rm -rf "$lab_dest"
  mkdir -p "$(dirname "$lab_dest")"
  cp -r "$lab_build" "$lab_dest"
  cat > "$lab_dest/install.json" <<'JSON'
{"packageManager": "python", "packageName": "splitbrain_kernel", "uninstallInstructions": "rm -r .venv/share/jupyter/labextensions/splitbrain-lab"}
JSON
fi
