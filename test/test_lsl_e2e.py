"""End to end over LSL on loopback: ``emg-msk stream`` plays a session as an amplifier's LSL app
would (another process, 10-sample chunks in real time), and the graph reads it with the driver's
``lsl`` source: driver → conditioner → estimator → controller. Every sample must arrive once, in
order, with its exact value, and the estimates must equal the offline run of the same session.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

from emg_msk_ros.estimate_scores import recorded_estimates
from emg_msk_ros.io.bag_replay import read_topics
from emg_msk_ros.io.session_bag import read_recording, write_recording
from emg_msk_ros.io.sources import simulated_recording
from emg_msk_ros.learning.inference import estimate_offline, load_model
from emg_msk_ros.nodes.common import resolve_model
from emg_msk_ros.runner import Graph, load_config
from emg_msk_ros.signal import condition_recording
from emg_msk_ros.signal.conditioner import output_raw_index

DEADLINE_S = 60.0  # bound on waiting for the stream to be through; reached only on failure


def test_a_session_streamed_over_lsl_gives_the_offline_estimates(tmp_path, pylsl, lsl_name):
    estimator = load_model(resolve_model("knee"))
    session = write_recording(tmp_path / "session",
                              simulated_recording("knee", 3.0, 5, estimator.sample_rate),
                              chunk_size=10)
    recording = read_recording(session)  # the EMG exactly as the stream sends it (float32)
    n = recording.emg.shape[0]
    config = load_config()
    config["emg_driver"].update(source="lsl", lsl_name=lsl_name, lsl_timeout=30.0)
    stream = subprocess.Popen(
        [sys.executable, "-m", "emg_msk_ros.cli", "stream", str(session), "--name", lsl_name,
         "--chunk", "10", "--wait", str(DEADLINE_S)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        with Graph(config, record=tmp_path / "record") as graph:
            graph.start()
            published = graph.nodes["msk_estimator"].health.published
            expected = (n // round(recording.sample_rate / estimator.model_rate)
                        - estimator.window + 1)
            end = time.monotonic() + DEADLINE_S
            while published["msk/joint_states"] < expected and time.monotonic() < end:
                graph.spin_for(0.1)
            graph.spin_for(0.2)
            counts = graph.counts()
        output, _ = stream.communicate(timeout=DEADLINE_S)
    finally:
        stream.kill()
    assert stream.returncode == 0 and f"{n} samples pushed" in output, output
    assert all(c["dropped"] == 0 and c["repeated"] == 0 for c in counts.values()), counts
    recorded = read_topics(tmp_path / "record", ["/emg/raw", "/assist/state"])
    raw = [m for _, m in recorded["/emg/raw"]]
    index = np.concatenate([m.first_sample_index + np.arange(m.num_samples) for m in raw])
    np.testing.assert_array_equal(index, np.arange(n))  # every sample once, in order
    live_raw = np.concatenate([np.asarray(m.data).reshape(m.num_samples, -1) for m in raw])
    np.testing.assert_array_equal(live_raw, recording.emg.astype(np.float32))  # exact
    assert [list(m.channel_names) for m in raw[:1]] == [recording.channel_names]
    start_ns = raw[0].header.stamp.sec * 10**9 + raw[0].header.stamp.nanosec
    for m in raw:  # stamps: the stream's LSL times, one sample period apart
        stamp = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
        assert abs(stamp - start_ns - m.first_sample_index * 1e9 / recording.sample_rate) < 1e3

    envelope, _ = condition_recording(recording, estimator.conditioner_settings,
                                      estimator.calibration)
    offline = estimate_offline(estimator, envelope)
    live = recorded_estimates(tmp_path / "record")
    assert live["angle"].size == offline["angle"].size == expected
    # The controller acted on the estimates (its state carries the estimate's stamp; 0 before
    # the first). It reads them with sensor-data QoS (keep last 5): of a burst the graph could not
    # keep up with on a loaded machine it acts on the newest, so not all of them are demanded.
    commanded = {m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
                 for _, m in recorded["/assist/state"]} - {0}
    estimates = set(live["stamp_ns"].tolist())
    assert commanded <= estimates and max(estimates) in commanded
    assert len(commanded) >= 0.8 * len(estimates), (len(commanded), len(estimates))
    decimation = round(recording.sample_rate / estimator.model_rate)
    raw_index = output_raw_index(offline["index"], decimation)
    # stamps within 1 µs: each chunk's LSL timestamp is a float64 s on the sender's clock
    np.testing.assert_allclose(live["stamp_ns"] - start_ns,
                               raw_index * 1e9 / recording.sample_rate, rtol=0, atol=1e3)
    # tolerances as in test_e2e: float32 messages, float32 network arithmetic
    np.testing.assert_allclose(live["angle"], offline["angle"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(live["force"], offline["force"], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(live["activation"], offline["activation"], rtol=0, atol=1e-4)
