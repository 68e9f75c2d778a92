"""Point the ROS wheels' exported CMake files at this venv's Python and numpy headers.

The PyPI wheels of ROS 2 Kilted were built in a manylinux container and name include folders
of that machine (``/opt/python/cp311-cp311/...``); CMake refuses imported targets whose
include folders do not exist. Usage: ``python fix_wheel_cmake_paths.py VENV``.
"""

import sys
import sysconfig
from pathlib import Path

import numpy

BUILD_PYTHON = "/opt/python/cp311-cp311"
REPLACEMENTS = {
    f"{BUILD_PYTHON}/lib/python3.11/site-packages/numpy/_core/include": numpy.get_include(),
    f"{BUILD_PYTHON}/include/python3.11": sysconfig.get_paths()["include"],
}


def main(venv: str) -> int:
    changed = 0
    for path in (Path(venv) / "share").rglob("*.cmake"):
        text = path.read_text()
        if BUILD_PYTHON not in text:
            continue
        for old, new in REPLACEMENTS.items():
            text = text.replace(old, new)
        path.write_text(text)
        changed += 1
    print(f"setup: rewrote build-machine include paths in {changed} CMake files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
