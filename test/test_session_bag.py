"""Session bags: a Recording survives the rosbag2 (MCAP) round trip; bad bags are named."""

import numpy as np
import pytest
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from emg_msk_ros.io.bag_record import BagError
from emg_msk_ros.io.bag_replay import read_topics
from emg_msk_ros.io.recording import Recording
from emg_msk_ros.io.session_bag import (
    TOPIC_EMG, TOPIC_METADATA, SessionError, qos, read_recording, write_recording)
from emg_msk_ros.io.typestore import typestore


def _recording(seed=0, n=4003):
    rng = np.random.default_rng(seed)
    kin_time = np.arange(0, n / 2000.0, 0.01)
    m = kin_time.size
    return Recording(
        emg=rng.normal(0, 2e-4, (n, 3)), sample_rate=2000.0, channel_names=["RF", "VM", "BF"],
        start_time=12.5, joint_name="knee_angle_r", kin_time=kin_time + 12.5,
        angle=np.sin(kin_time), velocity=np.cos(kin_time), muscle_names=["a", "b"],
        activation=rng.random((m, 2)), force=rng.random((m, 2)) * 1000,
        moment=rng.normal(0, 10, (m, 2)), metadata={"seed": seed, "preset": "knee"})


def test_round_trip_keeps_every_sample(tmp_path):
    rec = _recording()
    back = read_recording(write_recording(tmp_path / "s", rec, chunk_size=20))
    np.testing.assert_array_equal(back.emg, rec.emg.astype(np.float32).astype(np.float64))
    assert back.channel_names == rec.channel_names and back.sample_rate == 2000.0
    assert back.start_time == 12.5 and back.joint_name == "knee_angle_r"
    np.testing.assert_allclose(back.kin_time, rec.kin_time, atol=1e-9)
    for name in ("angle", "velocity", "activation", "force", "moment"):
        np.testing.assert_array_equal(getattr(back, name), getattr(rec, name), err_msg=name)
    assert back.metadata == {"seed": 0, "preset": "knee"}


def test_emg_chunks_are_stamped_and_sequenced(tmp_path):
    path = write_recording(tmp_path / "s", _recording(n=100), chunk_size=30)
    with Reader(path) as reader:
        conn = [c for c in reader.connections if c.topic == TOPIC_EMG][0]
        msgs = [(t, typestore().deserialize_cdr(raw, conn.msgtype))
                for _, t, raw in reader.messages(connections=[conn])]
        assert "reliability: best_effort" in conn.ext.offered_qos_profiles or \
            conn.ext.offered_qos_profiles[0].reliability.name == "BEST_EFFORT"
    assert [m.first_sample_index for _, m in msgs] == [0, 30, 60, 90]
    assert [m.num_samples for _, m in msgs] == [30, 30, 30, 10]
    first = msgs[1][1].header.stamp
    assert first.sec * 10**9 + first.nanosec == 12_500_000_000 + 15_000_000
    assert msgs[1][0] == 12_500_000_000 + round(59 / 2000 * 1e9)


def test_same_input_gives_byte_identical_bag(tmp_path):
    a = write_recording(tmp_path / "a" / "s", _recording(3))
    b = write_recording(tmp_path / "b" / "s", _recording(3))
    for name in ("s.mcap", "metadata.yaml"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_emg_only_recording_has_no_kinematics(tmp_path):
    rec = Recording(emg=np.ones((50, 2)), sample_rate=1000.0, channel_names=["x", "y"])
    back = read_recording(write_recording(tmp_path / "s", rec))
    assert back.angle is None and back.force is None
    np.testing.assert_array_equal(back.emg, rec.emg)


def _write_raw(path, topics, emg_indices=(0, 10)):
    store = typestore()
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        if TOPIC_METADATA in topics:
            conn = writer.add_connection(TOPIC_METADATA, "std_msgs/msg/String", typestore=store,
                                         offered_qos_profiles=[qos(False)])
            doc = ("schema: emg_msk_ros/session/1\nsample_rate: 1000.0\nchannel_names: [a]\n"
                   "start_time: 0.0\n")
            writer.write(conn, 0, store.serialize_cdr(
                store.types["std_msgs/msg/String"](data=doc), "std_msgs/msg/String"))
        if TOPIC_EMG in topics:
            cls = store.types["emg_msk_ros/msg/EmgArray"]
            conn = writer.add_connection(TOPIC_EMG, "emg_msk_ros/msg/EmgArray", typestore=store)
            for k, index in enumerate(emg_indices):
                msg = cls(header=store.types["std_msgs/msg/Header"](
                    stamp=store.types["builtin_interfaces/msg/Time"](sec=0, nanosec=k), frame_id=""),
                    sample_rate=1000.0, channel_names=["a"], num_samples=10,
                    first_sample_index=index, unit=0, data=np.zeros(10, np.float32))
                writer.write(conn, k + 1, store.serialize_cdr(msg, "emg_msk_ros/msg/EmgArray"))


def test_missing_emg_topic_is_named(tmp_path):
    _write_raw(tmp_path / "s", {TOPIC_METADATA})
    with pytest.raises(SessionError, match="/emg/raw is missing"):
        read_recording(tmp_path / "s")


def test_gap_in_emg_is_an_error_not_silent_loss(tmp_path):
    _write_raw(tmp_path / "s", {TOPIC_METADATA, TOPIC_EMG}, emg_indices=(0, 20))
    with pytest.raises(SessionError, match="expected sample 10 next, got 20 \\(gap\\)"):
        read_recording(tmp_path / "s")


def test_not_a_bag_is_named(tmp_path):
    with pytest.raises(SessionError, match="not a rosbag2 folder"):
        read_recording(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_truncated_or_empty_bag_file_is_named_not_a_traceback(tmp_path, damage):
    path = write_recording(tmp_path / "s", _recording(n=2000))
    storage = next(path.glob("*.mcap"))
    with open(storage, "r+b") as f:
        f.truncate(storage.stat().st_size // 2 if damage == "truncated" else 0)
    with pytest.raises(SessionError, match=r"cannot read the bag"):
        read_recording(path)
    with pytest.raises(BagError, match=r"cannot read the bag"):
        read_topics(path, [TOPIC_EMG])


def test_a_metadata_topic_without_messages_is_named(tmp_path):
    store = typestore()
    with Writer(tmp_path / "s", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        writer.add_connection(TOPIC_METADATA, "std_msgs/msg/String", typestore=store)
        writer.add_connection(TOPIC_EMG, "emg_msk_ros/msg/EmgArray", typestore=store)
    with pytest.raises(SessionError, match="/session/metadata has no messages"):
        read_recording(tmp_path / "s")


def test_a_joint_state_topic_without_messages_reads_as_no_kinematics(tmp_path):
    rec = _recording(n=200)
    empty = Recording(emg=rec.emg, sample_rate=rec.sample_rate, channel_names=rec.channel_names,
                      joint_name="knee_angle_r", kin_time=rec.kin_time[:0], angle=rec.angle[:0])
    back = read_recording(write_recording(tmp_path / "s", empty))
    assert back.angle is None and back.kin_time is None
