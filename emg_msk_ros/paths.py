"""Where the package's data files (config/, models/, benchmarks/) live.

In a source checkout they sit beside the package; once installed (CMake/colcon or pip) they
live in ``<prefix>/share/emg_msk_ros``.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "emg_msk_ros"


def share_dir() -> Path:
    """Return the folder that holds ``config/``, ``models/`` and ``benchmarks/``."""
    here = Path(__file__).resolve().parent
    checkout = here.parent
    if (checkout / "package.xml").is_file() and (checkout / "config").is_dir():
        return checkout
    candidates = [Path(sys.prefix) / "share" / PACKAGE]
    # <prefix>/lib/pythonX.Y/site-packages/emg_msk_ros -> <prefix>
    if len(here.parents) > 3:
        candidates.insert(0, here.parents[3] / "share" / PACKAGE)
    for candidate in candidates:
        if (candidate / "config").is_dir():
            return candidate
    raise FileNotFoundError(
        f"cannot find the {PACKAGE} share folder (looked in {', '.join(map(str, candidates))}); "
        "is the package installed?"
    )


def config_path(name: str) -> Path:
    """Path of a file under ``config/`` (e.g. ``"pipeline.yaml"``, ``"presets/knee.yaml"``)."""
    return share_dir() / "config" / name


def models_dir() -> Path:
    """The folder of the default trained models."""
    return share_dir() / "models"
