"""The benchmark registry and small helpers shared by the scripts in ``benchmarks/`` (ROS-free).

Every ``benchmarks/NAME.py`` (``NAME`` not starting with ``_``) is the benchmark ``emg-msk bench
NAME`` (underscores read as hyphens) and has ``main(argv) -> int`` (exit code 0 when it ran).
Each accepts:

- ``--json``: the numbers as JSON on stdout (anything else goes to stderr);
- ``--quick``: a smoke run of a few seconds that goes through every code path of the
  benchmark with its sizes cut down (``add_quick`` and ``parse_with_quick`` below); its numbers
  are not results. ``test/test_benchmarks_quick.py`` runs ``emg-msk bench NAME --quick --json``
  for every benchmark found here, so a broken benchmark fails the test suite.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from emg_msk_ros.paths import share_dir

THREAD_LIMITS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def find_benchmarks() -> dict[str, Path]:
    """The benchmark registry: ``emg-msk bench`` name -> script, sorted by name."""
    folder = share_dir() / "benchmarks"
    return {p.stem.replace("_", "-"): p for p in sorted(folder.glob("*.py"))
            if not p.name.startswith("_")}


def add_quick(parser: argparse.ArgumentParser, what: str) -> None:
    """Add the ``--quick`` option every benchmark has; ``what`` says what its smoke run does."""
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run of a few seconds, its numbers not results: {what}")


def parse_with_quick(parser: argparse.ArgumentParser, argv: Sequence[str],
                     **quick_defaults) -> argparse.Namespace:
    """Parse ``argv``; with ``--quick``, each option in ``quick_defaults`` that the command line
    does not give takes its quick value instead of its usual default."""
    args = parser.parse_args(argv)
    if args.quick and quick_defaults:
        parser.set_defaults(**quick_defaults)
        args = parser.parse_args(argv)
    return args


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
