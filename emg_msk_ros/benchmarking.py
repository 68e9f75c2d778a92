"""Small helpers shared by the scripts in ``benchmarks/`` (ROS-free)."""

from __future__ import annotations

import os


def pin_one_core() -> str:
    """Pin this process to one CPU so timings are single-core; return what was done."""
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to CPU {core}"
    return "not pinned"
