"""Recording rclpy topics to MCAP and replaying bags with their timing (loopback DDS)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import rclpy
from rosbags.interfaces import QosReliability
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from emg_msk_ros.io.bag_record import BagError, BagRecorder, published_topics, select_topics
from emg_msk_ros.io.bag_replay import BagPlayer, read_topics
from emg_msk_ros.io.recording import Recording
from emg_msk_ros.io.session_bag import write_recording
from emg_msk_ros.msg import EmgArray
from emg_msk_ros.nodes.common import sensor_qos


def spin_until(executor, done, timeout=10.0) -> bool:
    end = time.monotonic() + timeout
    while not done() and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.02)
    return done()


def test_recorder_writes_every_message_with_the_offered_qos(rclpy_context, executor, tmp_path):
    talker = rclpy.create_node("talker", context=rclpy_context)
    emg_pub = talker.create_publisher(EmgArray, "emg/raw", sensor_qos(50))
    text_pub = talker.create_publisher(String, "notes", 10)
    recorder_node = rclpy.create_node("recorder", context=rclpy_context)
    topics = published_topics([talker])
    assert set(topics) == {"/emg/raw", "/notes"}
    recorder = BagRecorder(recorder_node, tmp_path / "bag", topics)
    executor.add_node(talker)
    executor.add_node(recorder_node)
    assert spin_until(executor, lambda: recorder.subscriptions_matched()
                      and emg_pub.get_subscription_count() and text_pub.get_subscription_count())
    sent = []
    for k in range(30):
        msg = EmgArray(num_samples=2, first_sample_index=2 * k, channel_names=["A"],
                       sample_rate=1000.0)
        msg.data = [float(k), float(k) + 0.5]
        sent.append(msg)
        emg_pub.publish(msg)
        executor.spin_once(timeout_sec=0.001)
    text_pub.publish(String(data="done"))
    assert spin_until(executor, lambda: recorder.counts == {"/emg/raw": 30, "/notes": 1})
    recorder.close()

    with Reader(tmp_path / "bag") as reader:
        qos = {c.topic: c.ext.offered_qos_profiles[0] for c in reader.connections}
        types = {c.topic: c.msgtype for c in reader.connections}
    assert types == {"/emg/raw": "emg_msk_ros/msg/EmgArray", "/notes": "std_msgs/msg/String"}
    assert qos["/emg/raw"].reliability == QosReliability.BEST_EFFORT and qos["/emg/raw"].depth == 50
    assert qos["/notes"].reliability == QosReliability.RELIABLE
    recorded = read_topics(tmp_path / "bag", ["/emg/raw", "/notes"])
    assert [m.first_sample_index for _, m in recorded["/emg/raw"]] == list(range(0, 60, 2))
    np.testing.assert_array_equal(recorded["/emg/raw"][7][1].data, [7.0, 7.5])
    assert recorded["/notes"][0][1].data == "done"
    log_times = [t for t, _ in recorded["/emg/raw"]]
    assert log_times == sorted(log_times)


def test_recording_a_topic_nobody_publishes_is_refused_by_name(rclpy_context):
    talker = rclpy.create_node("talker", context=rclpy_context)
    talker.create_publisher(String, "notes", 10)
    with pytest.raises(BagError, match="/msk/markers"):
        select_topics(published_topics([talker]), ["msk/markers"])


@pytest.fixture
def session(tmp_path):
    """A 0.2 s session with joint states every 10 ms."""
    rec = Recording(emg=np.zeros((400, 1)), sample_rate=2000.0, channel_names=["A"],
                    joint_name="knee", kin_time=3.0 + np.arange(20) * 0.01,
                    angle=np.linspace(0, 1, 20), start_time=3.0)
    return write_recording(tmp_path / "session", rec), rec


class VirtualTime(threading.Event):
    """A stop event whose wait() moves a virtual clock (ns) instead of sleeping."""

    def __init__(self, now: int) -> None:
        super().__init__()
        self.now = now

    def clock(self) -> int:
        return self.now

    def wait(self, timeout=None):
        self.now += round(timeout * 1e9)
        return self.is_set()


def test_player_publishes_at_the_original_timing_scaled_by_rate(rclpy_context, session):
    path, rec = session
    node = rclpy.create_node("player", context=rclpy_context)
    time_ = VirtualTime(now=10**18)
    player = BagPlayer(node, path, ["/joint_states"], rate=2.0, start_offset=0.05,
                       clock_ns=time_.clock)
    published = []
    real_publish = player._publish
    player._publish = lambda conn, raw, shift: (published.append((time_.now, shift)),
                                                real_publish(conn, raw, shift))
    player.play(10**18, time_)
    assert player.done.is_set() and player.counts == {"/joint_states": 15}
    # message k after the offset is due (k * 10 ms) / rate after the start
    assert [t - 10**18 for t, _ in published] == [k * 5_000_000 for k in range(15)]
    assert {shift for _, shift in published} == {10**18 - (3_000_000_000 + 50_000_000)}


def test_player_restamps_headers_and_loops(rclpy_context, executor, session):
    path, rec = session
    node = rclpy.create_node("player", context=rclpy_context)
    listener = rclpy.create_node("listener", context=rclpy_context)
    got: list = []
    subscription = listener.create_subscription(JointState, "joint_states", got.append, 100)
    executor.add_node(node)
    executor.add_node(listener)
    player = BagPlayer(node, path, ["/joint_states"], rate=4.0, loop=True)
    assert spin_until(executor, lambda: player.publishers[0].get_subscription_count() == 1
                      and subscription.get_publisher_count() == 1)
    start = time.time_ns()
    player.start(start)
    assert spin_until(executor, lambda: len(got) >= 30)
    player.stop()
    stamps = np.array([m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in got[:30]])
    # the first pass keeps the 10 ms spacing, shifted so the first message is stamped `start`
    np.testing.assert_array_equal(stamps[:20], start + np.arange(20) * 10_000_000)
    # the loop continues one (mean) interval after the last message, with the same spacing
    np.testing.assert_array_equal(np.diff(stamps[19:30]), np.full(10, 10_000_000))
    np.testing.assert_allclose([m.position[0] for m in got[20:30]], rec.angle[:10])


def test_player_names_a_missing_topic(rclpy_context, session):
    node = rclpy.create_node("player", context=rclpy_context)
    with pytest.raises(BagError, match="/assist/state.*missing"):
        BagPlayer(node, session[0], ["/assist/state"])


def test_unknown_message_types_are_named(rclpy_context, tmp_path):
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg("int32 x", "lab_msgs/msg/Gadget"))
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/gadget", "lab_msgs/msg/Gadget", typestore=store)
        writer.write(conn, 1, store.serialize_cdr(store.types["lab_msgs/msg/Gadget"](x=1),
                                                  "lab_msgs/msg/Gadget"))
    node = rclpy.create_node("player", context=rclpy_context)
    with pytest.raises(BagError, match="lab_msgs/msg/Gadget"):
        BagPlayer(node, tmp_path / "bag")
    with pytest.raises(BagError, match="/gadget has message type lab_msgs/msg/Gadget"):
        read_topics(tmp_path / "bag", ["/gadget"])
