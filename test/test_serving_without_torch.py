"""Serving needs no torch: ``emg-msk run`` runs a session through all four nodes (emg_driver,
emg_conditioner, msk_estimator, assist_controller) in a process where torch cannot be imported,
with the EMG-only and the state-aided default model, and the training commands there say what
they need."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from emg_msk_ros.io.bag_replay import read_topics
from emg_msk_ros.io.session_bag import write_recording
from emg_msk_ros.paths import models_dir
from emg_msk_ros.physics.preset import load_preset
from emg_msk_ros.physics.simulate import simulate_session
from emg_msk_ros.runner import load_config

# `python -c` program: torch made unimportable (a finder ahead of all others refuses it, as if
# it were not installed), then the emg-msk command line with the arguments given.
WITHOUT_TORCH = """
import sys


class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NoTorch())
from emg_msk_ros.cli import main
code = main(sys.argv[1:])
print("torch modules:", sorted(name for name, module in sys.modules.items()
                               if module is not None and name.split(".")[0] == "torch"))
print("train:", main(["train"]))
sys.exit(code)
"""


@pytest.mark.parametrize("model", ["knee", "knee-state"])
def test_the_node_graph_runs_a_session_where_torch_cannot_be_imported(tmp_path, model):
    seconds = 3.0
    session = write_recording(tmp_path / "session", simulate_session(
        load_preset("knee"), seconds, seed=4, kin_rate=100.0), chunk_size=10)
    config = {name: {"ros__parameters": values} for name, values in load_config().items()}
    for node in ("emg_conditioner", "msk_estimator"):
        config[node]["ros__parameters"]["model"] = model
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(config))
    # the state-aided estimator reads the session's encoder as the exoskeleton's joint states
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, "run", "--bag", str(session), "--rate", "2",
         "--config", str(tmp_path / "pipeline.yaml"), "--replay-topics", "/joint_states",
         "--record", str(tmp_path / "record")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "torch modules: []" in run.stdout
    assert "train: 2" in run.stdout and "emg-msk train: needs torch" in run.stderr
    state_aided = model == "knee-state"
    topics = read_topics(tmp_path / "record", ["/msk/joint_states", "/assist/state"]
                         + ["/msk/joint_prediction"] * state_aided)
    assert not state_aided or len(topics["/msk/joint_prediction"]) == len(
        topics["/msk/joint_states"])
    angles = np.array([m.position[0] for _, m in topics["/msk/joint_states"]])
    # the estimator ran on the ONNX model: an estimate per envelope sample (100 Hz) once its
    # 0.7 s window filled, inside the knee's range give or take the model's error; the
    # state-aided one withholds estimates while the replayed joint states lag the EMG (by
    # design: it never substitutes a reading), which a loaded machine makes frequent
    assert (0 if state_aided else 0.5 * (seconds - 0.7) * 100) < angles.size <= seconds * 100
    assert np.all(np.isfinite(angles)) and np.all((angles > -0.5) & (angles < 2.6))
    assert topics["/assist/state"]  # and the controller answered


@pytest.mark.parametrize("model", ["knee", "knee-state"])
def test_evaluate_scores_a_session_where_torch_cannot_be_imported(tmp_path, model):
    """`emg-msk evaluate` serves the model with ONNX Runtime: the same metrics without torch."""
    session = write_recording(tmp_path / "session", simulate_session(
        load_preset("knee"), 4.0, seed=5, kin_rate=100.0), chunk_size=10)
    args = ["evaluate", "--model", str(models_dir() / model), "--data", str(session), "--json"]
    without = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, *args], capture_output=True,
                             text=True, timeout=300, cwd=tmp_path)
    assert without.returncode == 0, without.stdout + without.stderr
    report, _, rest = without.stdout.partition("torch modules:")
    assert rest.startswith(" []")
    with_torch = subprocess.run([sys.executable, "-m", "emg_msk_ros.cli", *args],
                                capture_output=True, text=True, timeout=300, check=True,
                                cwd=tmp_path)
    metrics = json.loads(report)["metrics"]
    assert metrics == json.loads(with_torch.stdout)["metrics"]
    assert np.isfinite(metrics["angle"]["rmse_deg"])
    assert (model == "knee-state") == ("angle_ahead" in metrics)


# `python -c` program: says what ORT_DISABLE_TELEMETRY holds when onnxruntime is imported.
AT_ORT_IMPORT = """
import os
import sys


class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "onnxruntime":
            print("at import:", os.environ.get("ORT_DISABLE_TELEMETRY"))


sys.meta_path.insert(0, Watch())
import emg_msk_ros.learning.runtime
"""


@pytest.mark.parametrize("users, expected", [(None, "1"), ("0", "0")])
def test_serving_opts_out_of_onnx_runtime_telemetry_before_importing_it(users, expected,
                                                                         monkeypatch, tmp_path):
    """ONNX Runtime 1.29+ sends telemetry off the machine unless ORT_DISABLE_TELEMETRY=1 is set
    before it initialises: serving sets it first, keeping a value the user set."""
    monkeypatch.delenv("ORT_DISABLE_TELEMETRY", raising=False)
    if users is not None:
        monkeypatch.setenv("ORT_DISABLE_TELEMETRY", users)
    done = subprocess.run([sys.executable, "-c", AT_ORT_IMPORT], capture_output=True,
                          text=True, timeout=120, check=True, cwd=tmp_path)  # the installed copy
    assert done.stdout.splitlines() == [f"at import: {expected}"]
