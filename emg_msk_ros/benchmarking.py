"""Small helpers shared by the scripts in ``benchmarks/`` (ROS-free)."""

from __future__ import annotations

import os
import subprocess
import sys

THREAD_LIMITS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def pin_one_core() -> str:
    """Pin this process to one CPU so timings are single-core; return what was done."""
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to CPU {core}"
    return "not pinned"


def rerun_single_threaded(script: str, argv: list[str]) -> int | None:
    """Run ``script argv`` in a child process limited to one BLAS/OpenMP thread, unless this
    process already is; return the child's exit status, or None in the limited process.

    A numpy call over a whole array wakes OpenBLAS's worker threads, which then spin on the
    other core and are counted in this process's CPU time; the limit only takes effect if set
    before numpy is loaded, hence a new process.
    """
    if all(os.environ.get(name) == "1" for name in THREAD_LIMITS):
        return None
    env = dict(os.environ, **{name: "1" for name in THREAD_LIMITS})
    return subprocess.call([sys.executable, script, *argv], env=env)


def emit_report(table: str, document: dict, json_target: str | None) -> None:
    """Print a benchmark's table; with ``--json [FILE]`` (``json_target``: "-" for stdout) also
    its figures as strict JSON (NaN as null), the table then going to stderr."""
    import json
    from pathlib import Path

    from emg_msk_ros.learning.evaluate import jsonable

    if json_target is None:
        print(table)
        return
    print(table, file=sys.stderr)
    text = json.dumps(jsonable(document), indent=2)
    if json_target == "-":
        print(text)
    else:
        Path(json_target).write_text(text + "\n", encoding="utf-8")
