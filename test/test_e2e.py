"""End to end, the open-loop demo: ``emg-msk demo --replay`` on a 20 s simulated session.

The demo replays the session in real time through the real rclpy graph (loopback DDS) and
records every topic. The recorded outputs must equal the offline run of the same model over the
same session (the conditioner's causal offline path + ``estimate_offline``), with no message
dropped or repeated; the report and plots must be there. Uses the default model
(``EMG_MSK_MODEL`` picks another folder).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from emg_msk_ros import cli
from emg_msk_ros.estimate_scores import recorded_estimates
from emg_msk_ros.io.bag_replay import read_topics
from emg_msk_ros.io.session_bag import read_recording
from emg_msk_ros.learning.inference import estimate_offline, load_model
from emg_msk_ros.nodes.common import resolve_model
from emg_msk_ros.signal import Calibration, condition_recording
from emg_msk_ros.signal.conditioner import output_raw_index

MODEL = os.environ.get("EMG_MSK_MODEL", "knee")


def test_demo_graph_output_equals_the_offline_run_without_drops(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--replay", "--out", str(out), "--duration", "20", "--seed", "11",
                     "--model", MODEL]) == 0
    printed = capsys.readouterr().out
    assert "angle RMSE" in printed and "latency (ms)" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["stopped"] == "drained" and report["dropped"] == 0 and report["repeated"] == 0
    assert all((out / name).stat().st_size > 10_000
               for name in ("angle.png", "forces.png", "latency.png"))

    estimator = load_model(resolve_model(MODEL))
    recording = read_recording(out / "session")  # the EMG exactly as it went out (float32)
    calibration = Calibration.load(out / "calibration.yaml")  # the session's MVC, not the model's
    assert calibration.references != estimator.calibration.references
    envelope, _ = condition_recording(recording, estimator.conditioner_settings, calibration)
    rest = calibration.rest_excitation_for(estimator.channel_names)  # the session's rest trial
    assert rest is not None and not np.allclose(rest, estimator.baseline)
    offline = estimate_offline(estimator, envelope, rest)
    recorded = read_topics(out / "record", ["/emg/raw", "/emg/envelope"])

    raw = [m for _, m in recorded["/emg/raw"]]
    assert [m.first_sample_index for m in raw] == list(range(0, 40000, 10))  # once, in order
    start_ns = raw[0].header.stamp.sec * 10**9 + raw[0].header.stamp.nanosec
    env_msgs = [m for _, m in recorded["/emg/envelope"]]
    env_index = np.concatenate([m.first_sample_index + np.arange(m.num_samples)
                                for m in env_msgs])
    np.testing.assert_array_equal(env_index, np.arange(envelope.shape[0]))
    live_envelope = np.concatenate([np.asarray(m.data).reshape(m.num_samples, -1)
                                    for m in env_msgs])
    np.testing.assert_allclose(live_envelope, envelope.astype(np.float32), rtol=0, atol=1e-7)

    live = recorded_estimates(out / "record")
    assert report["estimates"] == live["angle"].size == offline["angle"].size
    decimation = round(recording.sample_rate / estimator.model_rate)
    raw_index = output_raw_index(offline["index"], decimation)
    expected_stamps = start_ns + np.round(raw_index * 1e9 / recording.sample_rate).astype(np.int64)
    np.testing.assert_array_equal(live["stamp_ns"], expected_stamps)  # no drop, no repeat
    np.testing.assert_allclose(live["angle"], offline["angle"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(live["force"], offline["force"], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(live["net_moment"], offline["net_moment"], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(live["activation"], offline["activation"], rtol=0, atol=1e-4)


@pytest.mark.parametrize("duration", ["0.3", "0", "nan", "inf"])
def test_demo_refuses_a_session_shorter_than_the_models_window(tmp_path, capsys, duration):
    assert cli.main(["demo", "--replay", "--out", str(tmp_path / "demo"), "--duration",
                     duration]) == 2
    assert "at least 1.7 s (the model's window alone is 0.7 s)" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()
