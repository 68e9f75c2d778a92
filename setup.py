"""pip install of the ROS-free core and the ``emg-msk`` command, for machines without ROS.

On a ROS 2 install, build with colcon (CMakeLists.txt) instead: that also generates the
messages (``emg_msk_ros.msg``) and installs the nodes, launch files and config. Here,
``scripts/setup.sh`` builds through CMake as well; this file is for training and evaluating on
machines that have no ROS at all (``pip install .``, README "Without ROS").

What each part needs beyond the core (numpy, scipy, PyYAML, rosbags, matplotlib, tqdm: simulate,
import, calibrate and the ROS-free benchmarks; ONNX Runtime: the estimator serves models with it):
- ``train`` extra: torch and onnx, for ``emg-msk train``, ``export`` and ``evaluate``. Torch is
  a range, not a pin, so that an installed torch (CPU or CUDA build, from the user's own index)
  is kept: installed first,
  ``pip install torch==2.13.0`` (the tested version), it is never replaced; without one, pip
  takes the newest release in the range (on Linux from PyPI a CUDA build of several GB).
- ``opensim`` extra: ``emg-msk import-osim``; ``lsl`` extra: the LSL driver source.
- ROS 2 (rclpy, the message packages, and this package's generated messages) is no extra: it
  comes from the ROS install and the colcon/CMake build; ``emg-msk run``, ``smoke``, ``demo``
  and the nodes say so when it is missing.
"""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent


def share_files(folder: str) -> list[tuple[str, list[str]]]:
    """(install dir, files) pairs that mirror ``folder`` under share/emg_msk_ros."""
    pairs = {}
    for path in sorted((ROOT / folder).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            rel = path.relative_to(ROOT)
            pairs.setdefault(str(Path("share/emg_msk_ros") / rel.parent), []).append(str(rel))
    return sorted(pairs.items())


setup(
    name="emg_msk_ros",
    version="0.1.0",
    description="Surface EMG to muscle forces, joint kinematics and assistive torque "
                "with a physics-informed CNN",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["emg_msk_ros", "emg_msk_ros.*"]),
    data_files=[("share/emg_msk_ros", ["package.xml"])]
    + [pair for folder in ("config", "models", "benchmarks", "msg", "launch")
       for pair in share_files(folder)],
    install_requires=["numpy", "scipy", "pyyaml", "onnxruntime", "rosbags", "matplotlib",
                      "tqdm"],
    extras_require={"train": ["torch>=2.13,<3", "onnx"], "opensim": ["opensim==4.6"],
                    "lsl": ["pylsl"],
                    "test": ["pytest", "hypothesis"]},
    entry_points={"console_scripts": ["emg-msk = emg_msk_ros.cli:main"]},
)
