"""The ``emg-msk`` command: one subcommand per job, each implemented where its work lives."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

from emg_msk_ros import __version__

# subcommand -> (module with configure(parser) and run(args) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "smoke": ("emg_msk_ros.smoke", "publish and receive each message type over rclpy"),
    "simulate": ("emg_msk_ros.physics.simulate", "write a synthetic session with ground truth"),
    "import-osim": ("emg_msk_ros.physics.osim_import", "make a preset from an OpenSim model"),
    "import": ("emg_msk_ros.io.importers", "convert a recording (uci, csv) to a session bag"),
    "calibrate": ("emg_msk_ros.signal.calibration",
                  "MVC references (and rest levels) of a session's electrodes"),
    "train": ("emg_msk_ros.learning.train", "train a (physics-informed) model on sessions"),
    "evaluate": ("emg_msk_ros.learning.evaluate", "score a model on a session"),
    "run": ("emg_msk_ros.runner", "run the node graph in one process"),
    "demo": ("emg_msk_ros.demo", "simulate, replay through the graph, report"),
}


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
    spec.loader.exec_module(module)
    return int(module.main(list(argv[1:])) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``emg-msk``; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        return _run_bench(argv[1:])
    parser = argparse.ArgumentParser(prog="emg-msk", description=__doc__)
    parser.add_argument("--version", action="version", version=f"emg-msk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("bench", help="speed and accuracy benchmarks (emg-msk bench NAME [--json])")
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            module = None
        sub_parser = sub.add_parser(name, help=help_text if module else "(not implemented yet)")
        if module is not None:
            module.configure(sub_parser)
        modules[name] = module
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = modules[args.command]
    if module is None:
        print(f"emg-msk {args.command}: not implemented yet", file=sys.stderr)
        return 2
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
