"""The researcher's path without ROS: ``emg-msk`` simulate -> train -> evaluate in a child
process where no ROS 2 module can be imported, and the ROS commands saying what to install.

The child runs the installed ``emg_msk_ros.cli`` behind a meta-path finder that refuses every
module of a ROS 2 install, as on a machine without one, and lists the refused names on stderr
at exit: the ROS-free commands must not even try one, so an import of rclpy at start-up,
guarded or not, fails the test.
"""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

# Runs in the child: refuse ROS 2 modules, report the refusals at exit, run the CLI (RUN).
BLOCKER = """
import atexit, sys
MESSAGES = {"builtin_interfaces", "std_msgs", "std_srvs", "sensor_msgs", "geometry_msgs",
            "diagnostic_msgs", "visualization_msgs", "lifecycle_msgs", "action_msgs",
            "service_msgs", "unique_identifier_msgs", "rosgraph_msgs"}
def is_ros(name):
    top = name.split(".")[0]
    return (top in MESSAGES or top.startswith(("rcl", "rmw", "rosidl", "ament"))
            or name == "emg_msk_ros.msg" or name.startswith("emg_msk_ros.msg."))
assert not [m for m in sys.modules if is_ros(m)], "a ROS module was loaded before the CLI"
refused = []
class NoRos:
    def find_spec(self, name, path=None, target=None):
        if is_ros(name):
            refused.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NoRos())
atexit.register(lambda: refused and print("refused ROS imports:", *refused, file=sys.stderr))
"""
# Then it runs each command line given (JSON) in turn in this one process (torch is imported
# once) and notes each exit code on stderr.
RUN = """
import json
from emg_msk_ros.cli import main
for args in json.loads(sys.argv[1]):
    try:
        code = main(args)
    except SystemExit as exc:  # --help
        code = exc.code
    print(f"== emg-msk {' '.join(args)}: exit {code}", file=sys.stderr)
"""

# A tiny network trained for two short epochs: this checks the path, not the accuracy.
TINY = {"schema": "emg_msk_ros/training/1",
        "training": {"model": {"hidden": 8, "kernel": 3, "levels": 2, "horizon": 4},
                     "data": {"min_train_s": 4.0},
                     "optim": {"max_epochs": 2, "min_epoch_batches": 1, "threads": 1}}}


def without_ros(commands: list[list[str]], cwd) -> tuple[str, list[str]]:
    """stdout and stderr lines of ``emg-msk`` COMMANDS run in a child process where ROS 2
    cannot be imported."""
    result = subprocess.run([sys.executable, "-c", BLOCKER + RUN, json.dumps(commands)],
                            capture_output=True, text=True, cwd=cwd, check=False, timeout=300)
    return result.stdout, result.stderr.splitlines()  # a crash shows in the "==" lines' place


def test_the_child_refuses_ros_modules_and_only_those(tmp_path):
    probe = ("import importlib\n"
             "for name in ('rclpy', 'std_msgs.msg', 'emg_msk_ros.msg', 'numpy', 'rosbags',\n"
             "             'emg_msk_ros.io.session_bag'):\n"
             "    try:\n        importlib.import_module(name); print(name, 'imports')\n"
             "    except ImportError:\n        print(name, 'refused')\n")
    result = subprocess.run([sys.executable, "-c", BLOCKER + probe], capture_output=True,
                            text=True, cwd=tmp_path, check=True, timeout=60)
    assert result.stdout.splitlines() == [
        "rclpy refused", "std_msgs.msg refused", "emg_msk_ros.msg refused", "numpy imports",
        "rosbags imports", "emg_msk_ros.io.session_bag imports"]
    assert "refused ROS imports: rclpy std_msgs emg_msk_ros.msg" in result.stderr


def test_simulate_train_evaluate_without_ros(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    commands = [
        ["--help"],
        ["simulate", "--preset", "knee", "--duration", "10", "--seed", "1", "--out", "session"],
        # no --preset: the session's metadata names it
        ["train", "--data", "session", "--out", "model", "--config", str(config), "--no-progress"],
        ["evaluate", "--model", "model", "--data", "session"],
    ]
    out, err = without_ros(commands, tmp_path)
    assert [line for line in err if line.startswith("== ")] == [
        f"== emg-msk {' '.join(args)}: exit 0" for args in commands], "\n".join(err)
    assert not [line for line in err if line.startswith("refused ROS imports")], err
    assert "wrote model (" in out and "model model on session" in out
    # the validation score beside the range of motion it is made over, not a bare R²
    angle = yaml.safe_load((tmp_path / "model" / "model.yaml").read_text())["metrics"][
        "validation"]["angle"]
    assert (f"validation on 20% of the training sessions, held out in 5 s blocks: angle RMSE "
            f"{angle['rmse_deg']:.2f} deg over a {angle['range_deg']:.1f} deg range of motion, "
            f"r {angle['r']:.2f}; physics residual ") in out
    assert angle["range_deg"] > 1.0  # the knee moves in a simulated session


def test_ros_commands_say_in_one_line_what_to_install(tmp_path):
    commands = [["run"], ["smoke"], ["demo", "--duration", "1"],
                ["bench", "latency", "--duration", "1"]]
    out, err = without_ros(commands, tmp_path)
    assert out == "" and len(err) == 2 * len(commands) + 1, "\n".join(err)
    for args, message, verdict in zip(commands, err[0::2], err[1::2]):
        name = " ".join(args[:2] if args[0] == "bench" else args[:1])
        assert message.startswith(f"emg-msk {name}: needs ROS 2"), message
        assert "colcon" in message and "scripts/setup.sh" in message, message
        assert verdict == f"== emg-msk {' '.join(args)}: exit 2"
    assert err[-1].startswith("refused ROS imports: rclpy")
