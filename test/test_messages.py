"""The custom messages are real ROS 2 interfaces: they cross DDS through rclpy intact."""

import time

import numpy as np
import pytest
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

from emg_msk_ros.msg import AssistState, EmgArray, MuscleState

RELIABLE_LATCHED = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                              durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)


def _round_trip(executor, msg, topic):
    from rclpy.node import Node

    received = []
    talker = Node("talker", context=executor.context)
    listener = Node("listener", context=executor.context)
    executor.add_node(talker)
    executor.add_node(listener)
    listener.create_subscription(type(msg), topic, received.append, RELIABLE_LATCHED)
    talker.create_publisher(type(msg), topic, RELIABLE_LATCHED).publish(msg)
    deadline = time.monotonic() + 10.0
    while not received and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    assert received, f"nothing received on {topic}"
    return received[0]


def _big_emg():
    rng = np.random.default_rng(1)
    msg = EmgArray(sample_rate=2000.0, channel_names=[f"ch{i}" for i in range(8)],
                   num_samples=1250, first_sample_index=2**40 + 7, unit=EmgArray.UNIT_VOLT)
    msg.header.stamp.sec = 1_700_000_000
    msg.header.stamp.nanosec = 123_456_789
    msg.header.frame_id = "right_thigh"
    msg.data = rng.normal(0, 1e-3, 10_000).astype(np.float32)
    return msg


def _big_muscles():
    rng = np.random.default_rng(2)
    n = 10_000
    return MuscleState(names=[f"m{i}" for i in range(n)], joint_names=["knee_angle_r"],
                       activation=rng.random(n), force=rng.random(n) * 3000.0,
                       moment=rng.normal(0, 20, n))


def _assist():
    return AssistState(joint_names=["knee_angle_r", "hip_flexion_r"], human_torque=[-11.5, 3.0],
                       desired_torque=[-4.0, 1.0], command_torque=[-2.5, 0.0],
                       state=AssistState.STATE_FAULTED, enabled=False, fault=True,
                       fault_reason="watchdog: msk/joint_states older than 50 ms",
                       saturated=[True, False], rate_limited=[False, True],
                       range_limited=[False, False], velocity_limited=[True, False],
                       stale_input=True)


@pytest.mark.parametrize("make", [_big_emg, _big_muscles, _assist], ids=["EmgArray", "MuscleState", "AssistState"])
def test_custom_message_round_trip_keeps_every_field(executor, make):
    sent = make()
    got = _round_trip(executor, sent, "test/" + type(sent).__name__.lower())
    assert got == sent
    for field in sent.get_fields_and_field_types():
        assert np.array_equal(np.asarray(getattr(got, field), dtype=object),
                              np.asarray(getattr(sent, field), dtype=object)) or \
            getattr(got, field) == getattr(sent, field), field


def test_emg_array_keeps_float32_payload_bit_exact(executor):
    sent = _big_emg()
    got = _round_trip(executor, sent, "test/emg_bits")
    assert len(got.data) == 10_000
    assert np.asarray(got.data, dtype=np.float32).tobytes() == np.asarray(sent.data).tobytes()
    assert got.first_sample_index == 2**40 + 7


def test_message_constants_are_generated():
    assert (EmgArray.UNIT_VOLT, EmgArray.UNIT_EXCITATION) == (0, 1)
    assert {AssistState.STATE_DISABLED, AssistState.STATE_ENABLED, AssistState.STATE_FAULTED,
            AssistState.STATE_ESTOP} == {0, 1, 2, 3}
