"""``msk_estimator`` with a state-aided model: it reads the exoskeleton's joint states, never
substitutes a missing, stale or wrong-joint one, recovers, and equals the offline run."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState

from emg_msk_ros.learning.inference import ModelError, estimate_offline, load_model
from emg_msk_ros.learning.joint_input import hold_at
from emg_msk_ros.msg import EmgArray
from emg_msk_ros.nodes.common import float32_array, sensor_qos, to_stamp
from emg_msk_ros.nodes.msk_estimator import MskEstimator

START = 10**18  # ns, stamp of envelope sample 0
ENCODER_RATE = 500.0


def node_for(context, model, **values) -> MskEstimator:
    overrides = [Parameter(name, value=value) for name, value in
                 {"model": str(model), **values}.items()]
    return MskEstimator(context=context, parameter_overrides=overrides)


def envelope_msg(est, data: np.ndarray, first: int) -> EmgArray:
    msg = EmgArray(sample_rate=est.model_rate, channel_names=est.channel_names,
                   num_samples=data.shape[0], first_sample_index=first,
                   unit=EmgArray.UNIT_EXCITATION)
    msg.header.stamp = to_stamp(START + round(first * 1e9 / est.model_rate))
    msg.data = float32_array(data)
    return msg


def joint_msg(stamp_ns: int, angle: float, velocity: float, name="knee_angle_r") -> JointState:
    msg = JointState(name=[name], position=[angle], velocity=[velocity])
    msg.header.stamp = to_stamp(stamp_ns)
    return msg


def signals(n: int, est, seed: int = 4):
    """Excitation (n, C) at the model rate and encoder readings (stamps ns, angle, velocity)
    covering it from 2 ms before sample 0."""
    rng = np.random.default_rng(seed)
    env = np.clip(np.cumsum(rng.normal(0, 0.03, (n, len(est.channel_names))), axis=0) + 0.3,
                  0, 1).astype(np.float32)
    count = int(n / est.model_rate * ENCODER_RATE) + 2
    stamps = START - 2_000_000 + np.round(np.arange(count) * 1e9 / ENCODER_RATE).astype(np.int64)
    t = (stamps - START) * 1e-9
    return env, stamps, -1.0 + 0.3 * np.sin(3 * t), 0.9 * np.cos(3 * t)


@pytest.fixture
def model(state_aided_model):
    return state_aided_model


def test_node_output_equals_the_offline_estimate(rclpy_context, executor, model):
    est = load_model(model)
    node = node_for(rclpy_context, model)
    listener = rclpy.create_node("listener", context=rclpy_context)
    predictions, joints = [], []
    listener.create_subscription(JointState, "msk/joint_prediction", predictions.append,
                                 sensor_qos(500))
    listener.create_subscription(JointState, "msk/joint_states", joints.append, sensor_qos(500))
    executor.add_node(node)
    executor.add_node(listener)
    end = time.monotonic() + 15
    while not (node.prediction_publisher.get_subscription_count()
               and node.joint_publisher.get_subscription_count()) and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.02)
    n = est.window + 30
    env, stamps, angle, velocity = signals(n, est)
    period = 1e9 / est.model_rate
    for first in range(0, n, 2):
        # the readings up to the chunk's last sample arrive before it
        last = START + round((first + 1) * period)
        for k in np.flatnonzero((stamps <= last) & (stamps > last - 2 * period)):
            node.on_joint_state(joint_msg(int(stamps[k]), angle[k], velocity[k]))
        node.on_envelope(envelope_msg(est, env[first:first + 2], first))
        executor.spin_once(timeout_sec=0.001)
    times = START + np.round(np.arange(n) * period)
    state, _ = hold_at(stamps.astype(np.float64), np.stack([angle, velocity], axis=1), times)
    offline = estimate_offline(est, env, None, state)
    count = len(offline["index"])
    assert count == 31
    end = time.monotonic() + 15
    while (len(predictions) < count or len(joints) < count) and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.02)
    assert len(predictions) == len(joints) == count
    stamps_out = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in predictions]
    assert stamps_out == [START + round(i * period) for i in offline["index"]]
    # same module and inputs: differences only from float32 sums over another batch size
    np.testing.assert_allclose([m.position[0] for m in predictions], offline["angle_ahead"],
                               atol=1e-5)
    np.testing.assert_allclose([m.velocity[0] for m in predictions], offline["velocity_ahead"],
                               atol=1e-3)
    np.testing.assert_allclose([m.position[0] for m in joints], offline["angle"], atol=1e-5)
    np.testing.assert_allclose([m.effort[0] for m in joints], offline["net_moment"],
                               rtol=1e-4, atol=1e-3)


def feed(node, est, env, first, count, readings=None):
    """Envelope samples first..first+count in chunks of 5, each after the readings
    ``readings(first, count)`` gives for it (as they would arrive live)."""
    for start in range(first, first + count, 5):
        size = min(5, first + count - start)
        for msg in readings(start, size) if readings else []:
            node.on_joint_state(msg)
        node.on_envelope(envelope_msg(est, env[start:start + size], start))


def readings_for(est, stamps, angle, velocity, lag_ns=0, **kwargs):
    """``readings(first, count)``: the readings stamped up to envelope sample first+count-1
    and after sample first-1, or ``lag_ns`` earlier (a sensor whose data come late)."""
    period = 1e9 / est.model_rate

    def readings(first, count):
        last = START + round((first + count - 1) * period) - lag_ns
        return [joint_msg(int(s), a, v, **kwargs) for s, a, v in zip(stamps, angle, velocity)
                if last - count * period < s <= last]

    return readings


@pytest.mark.parametrize("fault, reason", [
    ("missing", "no joint state"),
    ("stale", "older than the EMG"),
    ("wrong joint", "not the model's joint"),
])
def test_node_refuses_bad_joint_states_and_recovers(rclpy_context, model, fault, reason):
    est = load_model(model)
    node = node_for(rclpy_context, model)
    w = est.window
    env, stamps, angle, velocity = signals(3 * w, est)
    good = readings_for(est, stamps, angle, velocity)
    bad = {"missing": None,  # none at all
           # the readings lag the EMG by 120 ms: even a chunk's first sample (40 ms before
           # its last) sees a reading 80 ms old (limit 50 ms)
           "stale": readings_for(est, stamps, angle, velocity, lag_ns=120_000_000),
           "wrong joint": readings_for(est, stamps, angle, velocity, name="hip_flexion_r"),
           }[fault]
    feed(node, est, env, 0, w, bad)
    assert node.estimates == 0 and node.window.full
    status = node.health.status()
    assert status.level == DiagnosticStatus.ERROR and reason in status.message
    # good readings again: estimates resume once a full window of them has come in
    feed(node, est, env, w, w - 1, good)
    assert node.estimates == 0
    feed(node, est, env, 2 * w - 1, 5, good)
    assert node.estimates == 5 and node.health.error is None


def test_a_state_aided_model_is_refused_without_a_joint_state_topic(rclpy_context, model):
    with pytest.raises(ModelError, match="state-aided"):
        node_for(rclpy_context, model, joint_state_topic="")
