"""``emg-msk run``: config loading, graph errors, and a clean Ctrl-C with zero torque last."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from sensor_msgs.msg import JointState
from std_srvs.srv import SetBool

from emg_msk_ros.io.bag_replay import read_topics
from emg_msk_ros.io.recording import Recording
from emg_msk_ros.io.session_bag import write_recording
from emg_msk_ros.learning.inference import load_model
from emg_msk_ros.msg import EmgArray
from emg_msk_ros.nodes.common import resolve_model, sensor_qos
from emg_msk_ros.paths import config_path
from emg_msk_ros.physics.preset import load_preset
from emg_msk_ros.physics.simulate import simulate_session
from emg_msk_ros import runner
from emg_msk_ros.runner import NODE_CLASSES, Graph, GraphError, load_config

MODEL = os.environ.get("EMG_MSK_MODEL", "knee")
EMG_MSK = Path(sys.executable).parent / "emg-msk"


def test_pipeline_config_has_a_section_per_node():
    config = load_config()
    assert list(config) == [name for name in NODE_CLASSES if name != "sim_exo"]
    assert config["emg_driver"]["chunk_size"] == 10
    closed = load_config(config_path("sim_exo.yaml"))  # the simulated wearer replaces the driver
    assert list(closed) == [name for name in NODE_CLASSES if name != "emg_driver"]


def test_the_graph_refuses_two_sources_of_emg_raw():
    config = load_config()
    config["sim_exo"] = {}
    with pytest.raises(GraphError, match="emg_driver and sim_exo both publish emg/raw"):
        Graph(config)


def test_pipeline_config_carries_the_controller_defaults_unchanged_but_the_rviz_frame():
    own = yaml.safe_load(config_path("assist_controller.yaml").read_text())
    merged = load_config()["assist_controller"]
    defaults = own["assist_controller"]["ros__parameters"]
    assert set(merged) == set(defaults)
    changed = {k for k in defaults if merged[k] != defaults[k]}
    assert changed <= {"wrench_frames"}
    assert merged["wrench_frames"] == [load_config()["msk_estimator"]["frame_id"]]


@pytest.mark.parametrize("text, message", [
    ("camera:\n  ros__parameters: {}\n", "unknown node 'camera'"),
    ("emg_driver:\n  source: sim\n", "section emg_driver must hold exactly one mapping"),
    ("emg_driver: [\n", "not valid YAML"),
])
def test_bad_config_files_are_refused_with_the_reason(tmp_path, text, message):
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    with pytest.raises(GraphError, match=message):
        load_config(path)


def test_graph_names_the_node_and_parameter_it_refuses():
    with pytest.raises(GraphError, match="node emg_driver: .*chunk_size"):
        Graph({"emg_driver": {"chunk_size": 0}})
    with pytest.raises(GraphError, match="node emg_driver has no parameter.*chunk_sise"):
        Graph({"emg_driver": {"chunk_sise": 20}})
    with pytest.raises(GraphError, match="node emg_driver: cannot open EMG source 'bag'.*nowhere"):
        Graph({"emg_driver": {"source": "bag", "bag_path": "/nowhere"}})


def test_replayed_topics_share_the_drivers_clock(tmp_path, rclpy_context, executor):
    rec = Recording(emg=np.zeros((2000, 1)), sample_rate=2000.0, channel_names=["A"],
                    joint_name="knee", kin_time=5.0 + np.arange(100) * 0.01,
                    angle=np.linspace(0.0, 1.0, 100), start_time=5.0)
    session = write_recording(tmp_path / "session", rec)
    listener = rclpy.create_node("listener", context=rclpy_context)
    joints, chunks = [], []
    subscriptions = [
        listener.create_subscription(JointState, "joint_states", joints.append, 200),
        listener.create_subscription(EmgArray, "emg/raw", chunks.append, sensor_qos(200))]
    executor.add_node(listener)
    with Graph({"emg_driver": {"source": "bag", "bag_path": str(session), "rate": 2.0}},
               replay_topics=["/joint_states"]) as graph:
        end = time.monotonic() + 20
        while not all(s.get_publisher_count() for s in subscriptions) and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.02)
        graph.start()
        end = time.monotonic() + 20
        while len(joints) < 100 and time.monotonic() < end:
            graph.spin_for(0.02)
            executor.spin_once(timeout_sec=0.02)
        start_ns = graph.driver.stream_start_ns
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in joints]
    assert stamps == [start_ns + k * 10_000_000 for k in range(100)]
    assert chunks[0].header.stamp.sec * 10**9 + chunks[0].header.stamp.nanosec == start_ns
    np.testing.assert_allclose([m.position[0] for m in joints], rec.angle)


def wait_for_line(process, text: str, timeout: float) -> str:
    end = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < end:
        line = process.stdout.readline()
        seen += line
        if text in line:
            return seen
        if process.poll() is not None:
            break
    raise AssertionError(f"no {text!r} in the output:\n{seen}")


def test_ctrl_c_stops_the_run_cleanly_with_zero_torque_last(tmp_path, rclpy_context, executor):
    estimator = load_model(resolve_model(MODEL))
    # 8 s of simulated knee EMG, so the estimate stays inside the joint's range and the
    # range-of-motion gate lets the assist torque through.
    assert estimator.sample_rate == 2000.0  # the simulator's default EMG rate
    session = write_recording(tmp_path / "session", simulate_session(
        load_preset("knee"), 8.0, seed=5, kin_rate=100.0), chunk_size=10)
    config = yaml.safe_load(config_path("pipeline.yaml").read_text())
    for name in ("emg_conditioner", "msk_estimator"):
        config[name]["ros__parameters"]["model"] = str(estimator.path)
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [str(EMG_MSK), "run", "--config", str(tmp_path / "pipeline.yaml"), "--bag",
         str(session), "--record", str(tmp_path / "record"), "--duration", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        wait_for_line(process, "Ctrl-C stops", timeout=120)
        # Enable assistance once the estimate flows, so the command is not zero by itself.
        client_node = rclpy.create_node("tester", context=rclpy_context)
        executor.add_node(client_node)
        client = client_node.create_client(SetBool, "assist/enable")
        assert client.wait_for_service(timeout_sec=30)
        enabled = False
        deadline = time.monotonic() + 30
        while not enabled and time.monotonic() < deadline:
            future = client.call_async(SetBool.Request(data=True))
            executor.spin_until_future_complete(future, timeout_sec=5)
            enabled = future.result() is not None and future.result().success
            time.sleep(0.2)
        assert enabled, "assist/enable was refused for 30 s"
        time.sleep(1.5)
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "stopping (stopped)" in output
    commands = read_topics(tmp_path / "record", ["/effort_controller/commands"])
    torques = np.array([m.data[0] for _, m in commands["/effort_controller/commands"]])
    assert np.abs(torques).max() > 0.0  # assistance was on
    assert torques[-1] == 0.0  # and the last command out is zero


def test_run_composes_the_closed_loop_config_and_refuses_replay_options_for_it():
    import argparse

    from emg_msk_ros.runner import graph_config

    closed = config_path("sim_exo.yaml")
    args = argparse.Namespace(config=closed, bag=None, rate=None)
    assert "emg_driver" not in graph_config(args) and "sim_exo" in graph_config(args)
    with pytest.raises(GraphError, match="this config runs sim_exo"):
        graph_config(argparse.Namespace(config=closed, bag=Path("session"), rate=None))


def test_an_observer_estimates_under_its_namespace_and_the_replay_still_drains(tmp_path):
    model = str(load_model(resolve_model(MODEL)).path)
    session = write_recording(tmp_path / "session", simulate_session(
        load_preset("knee"), 2.0, seed=6, kin_rate=100.0), chunk_size=10)
    config = {"emg_driver": {"source": "bag", "bag_path": str(session), "rate": 4.0,
                             "loop": False},
              "emg_conditioner": {"model": model}, "msk_estimator": {"model": model}}
    with Graph(config, record=tmp_path / "record", observers={"watch": {"model": model}},
               record_topics=["/msk/joint_states", "/watch/msk/joint_states"]) as graph:
        graph.start()
        # drained: every subscriber got all its publishers sent, counted by full topic name
        # (the observer's msk/joint_states is /watch/msk/joint_states, not the estimator's)
        assert graph.run(duration=60) == "drained"
        counts = graph.counts()
    watcher = counts["watch/msk_estimator"]
    assert watcher["received"]["emg/envelope"] == \
        counts["emg_conditioner"]["published"]["emg/envelope"] > 0
    topics = read_topics(tmp_path / "record", ["/msk/joint_states", "/watch/msk/joint_states"])
    loop, watched = topics["/msk/joint_states"], topics["/watch/msk/joint_states"]
    assert len(watched) == watcher["published"]["msk/joint_states"] == len(loop) > 0
    # the same model on the same envelope: the same estimates
    np.testing.assert_array_equal([m.position[0] for _, m in watched],
                                  [m.position[0] for _, m in loop])


def test_the_graph_shortens_the_gil_switch_interval_while_it_exists():
    """The driver's streaming thread gets the GIL from the callbacks' thread within 0.5 ms of
    asking, not CPython's default 5 ms (see emg_msk_ros.runner)."""
    before = sys.getswitchinterval()
    assert before != pytest.approx(runner.GIL_SWITCH_S)  # the default holds outside a graph
    with Graph({"assist_controller": load_config()["assist_controller"]}):
        assert sys.getswitchinterval() == pytest.approx(runner.GIL_SWITCH_S)
    assert sys.getswitchinterval() == before
