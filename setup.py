"""pip install of the ROS-free core and the ``emg-msk`` command, for machines without ROS.

On a ROS 2 install, build with colcon (CMakeLists.txt) instead: that also generates the
messages (``emg_msk_ros.msg``) and installs the nodes, launch files and config. Here,
``scripts/setup.sh`` builds through CMake as well; this file is for machines that have no ROS at
all: ``pip install .`` runs the estimator (ONNX Runtime), ``pip install '.[train]'`` adds torch
and onnx for ``emg-msk train``, ``export`` and ``evaluate``.
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
    # serving (the estimator runs the network in ONNX Runtime) needs no torch; training does
    install_requires=["numpy", "scipy", "pyyaml", "onnxruntime", "rosbags", "matplotlib", "tqdm"],
    extras_require={"train": ["torch", "onnx"], "opensim": ["opensim==4.6"], "lsl": ["pylsl"],
                    "test": ["pytest", "hypothesis"]},
    entry_points={"console_scripts": ["emg-msk = emg_msk_ros.cli:main"]},
)
