"""The package installed by scripts/setup.sh exposes generated messages and Python modules together."""

import importlib
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import emg_msk_ros
from emg_msk_ros.paths import share_dir

VENV_BIN = Path(sys.executable).parent


def test_installed_package_holds_messages_and_code():
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    pkg = Path(emg_msk_ros.__file__).resolve().parent
    assert pkg.parent == site, f"tests must import the installed copy, got {pkg}"
    from emg_msk_ros import cli, paths  # noqa: F401  the package's own modules
    from emg_msk_ros.msg import AssistState, EmgArray, MuscleState  # the generated half

    for msg in (EmgArray, MuscleState, AssistState):
        assert Path(sys.modules[msg.__module__].__file__).resolve().is_relative_to(pkg)


def test_share_folder_has_interfaces_and_config():
    share = share_dir()
    for name in ("EmgArray", "MuscleState", "AssistState"):
        assert (share / "msg" / f"{name}.msg").is_file()
    assert (share / "package.xml").is_file()
    assert (share / "config").is_dir()


def test_node_executables_and_cli_are_installed():
    prefix = Path(sysconfig.get_paths()["data"])
    for node in ("emg_driver", "emg_conditioner", "msk_estimator", "assist_controller"):
        exe = prefix / "lib" / "emg_msk_ros" / node
        assert exe.is_file() and os.access(exe, os.X_OK), exe
        assert f"emg_msk_ros.nodes.{node}" in exe.read_text()
        assert callable(importlib.import_module(f"emg_msk_ros.nodes.{node}").main)
    result = subprocess.run([str(VENV_BIN / "emg-msk"), "--version"], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert emg_msk_ros.__version__ in result.stdout


def test_cli_smoke_round_trip_runs(tmp_path):
    result = subprocess.run([str(VENV_BIN / "emg-msk"), "smoke"], capture_output=True, text=True,
                            cwd=tmp_path, check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("received intact") == 3


def test_cli_rejects_unknown_subcommand():
    result = subprocess.run([str(VENV_BIN / "emg-msk"), "no-such-command"], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
