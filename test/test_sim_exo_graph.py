"""The loop closes on loopback: sim_exo → conditioner → estimator → assist controller →
sim_exo, in one process, with the assist enabled through ``assist/enable``."""

from __future__ import annotations

import os

import numpy as np

from emg_msk_ros import closed_loop as loop
from emg_msk_ros.learning.inference import load_model
from emg_msk_ros.nodes.common import resolve_model

MODEL = os.environ.get("EMG_MSK_MODEL", "knee")


def test_the_graph_closes_the_loop_without_drops(tmp_path):
    model = load_model(resolve_model(MODEL))
    config = loop.sim_config()
    config["sim_exo"].update(task_duration=2.0, repeats=2, seed=5)
    calibration = loop.wearer_calibration(config, model).save(tmp_path / "calibration.yaml")
    for name in ("emg_conditioner", "msk_estimator"):
        config[name].update(model=str(model.path), calibration_file=str(calibration))
    session = loop.run_session(config, tmp_path / "record", enable_repeat=1)
    assert session.stopped == "task finished" and session.enabled_at is not None
    counts = session.counts
    sent = counts["sim_exo"]["published"]
    assert sent["emg/raw"] == counts["emg_conditioner"]["received"]["emg/raw"] > 0
    assert sent["joint_states"] > 0
    assert all(c["dropped"] == 0 and c["repeated"] == 0 for c in counts.values())
    plant = session.plant
    topics = loop.recorded(session)
    checks = loop.command_checks(session, topics, 1.0 / 200.0)
    # every command the controller sent while the plant streamed (as recorded) reached it
    start = session.plant_start_ns
    sent_commands = sum(t >= start for t, _ in topics[loop.COMMAND_TOPIC])
    assert len(plant.commands) > 0 and abs(sent_commands - len(plant.commands)) <= 1
    off, on = session.phases[:2]
    torque = plant.log["exo_torque"]
    assert not torque[off].any()  # disabled: zero commands, zero torque
    assert np.abs(torque[on]).max() > 0.1  # enabled: the device assists
    assert checks["over_max_torque"] == 0
    assert np.abs(torque).max() <= checks["max_abs_command_nm"] + 1e-9
