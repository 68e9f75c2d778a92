"""The driver, conditioner and estimator nodes over rclpy (loopback DDS; see conftest.py).

The conditioner and estimator tests use the package's default model (``EMG_MSK_MODEL`` picks
another folder).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState

from emg_msk_ros.io.recording import Recording
from emg_msk_ros.io.session_bag import write_recording
from emg_msk_ros.learning.inference import estimate_offline, load_model
from emg_msk_ros.msg import EmgArray, MuscleState
from emg_msk_ros.nodes.common import float32_array, resolve_model, sensor_qos, to_stamp
from emg_msk_ros.nodes.emg_conditioner import EmgConditioner
from emg_msk_ros.nodes.emg_driver import EmgDriver
from emg_msk_ros.nodes.msk_estimator import LimbMarkers, MskEstimator, SlidingWindow
from emg_msk_ros.signal import (
    Calibration,
    compute_calibration,
    condition_offline,
    load_settings,
)

MODEL = os.environ.get("EMG_MSK_MODEL", "knee")
FS = 2000.0
CHANNELS = ["RF", "VM", "BF", "ST"]


def params(**values):
    return [Parameter(name, value=value) for name, value in values.items()]


def spin_until(executor, done, timeout=15.0) -> bool:
    end = time.monotonic() + timeout
    while not done() and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.02)
    return done()


def matched(*nodes, ignore=()) -> bool:
    """Every publisher and subscription of ``nodes`` (but /rosout, /parameter_events,
    /diagnostics and ``ignore``) sees its other side: only then is no first message lost."""
    skip = ("/rosout", "/parameter_events", "/diagnostics", *ignore)
    return all(pub.get_subscription_count() for node in nodes for pub in node.publishers
               if pub.topic_name not in skip) and all(
        sub.get_publisher_count() for node in nodes for sub in node.subscriptions
        if sub.topic_name not in skip)


def collect(node, msg_type, topic, qos=None) -> list:
    messages: list = []
    node.create_subscription(msg_type, topic, messages.append, qos or sensor_qos(500))
    return messages


def raw_emg(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((int(seconds * FS), len(CHANNELS))) * 2e-4).astype(np.float32)


def emg_message(data: np.ndarray, first: int, stamp_ns: int, names=CHANNELS, rate=FS,
                unit=EmgArray.UNIT_VOLT) -> EmgArray:
    msg = EmgArray(sample_rate=rate, channel_names=list(names), num_samples=data.shape[0],
                   first_sample_index=first, unit=unit)
    msg.header.stamp = to_stamp(stamp_ns)
    msg.data = float32_array(data)
    return msg


@pytest.fixture
def session_bag(tmp_path):
    emg = raw_emg(0.5).astype(np.float64)
    path = write_recording(tmp_path / "session", Recording(emg=emg, sample_rate=FS,
                                                           channel_names=CHANNELS))
    return path, emg


# -- emg_driver ------------------------------------------------------------------------------

def test_driver_streams_a_session_in_order_with_indices_and_stamps(rclpy_context, executor,
                                                                    session_bag):
    path, emg = session_bag
    driver = EmgDriver(context=rclpy_context, parameter_overrides=params(
        source="bag", bag_path=str(path), chunk_size=10, rate=2.0))
    listener = rclpy.create_node("listener", context=rclpy_context)
    got = collect(listener, EmgArray, "emg/raw")
    executor.add_node(driver)
    executor.add_node(listener)
    assert driver.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert spin_until(executor, lambda: matched(listener))
    assert not got
    assert driver.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert spin_until(executor, lambda: driver.finished.is_set() and len(got) == 100)
    assert [m.first_sample_index for m in got] == list(range(0, 1000, 10))
    assert all(m.unit == EmgArray.UNIT_VOLT and list(m.channel_names) == CHANNELS for m in got)
    data = np.concatenate([np.asarray(m.data).reshape(m.num_samples, 4) for m in got])
    np.testing.assert_array_equal(data, emg.astype(np.float32))
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in got]
    assert stamps == [driver.stream_start_ns + k * 5_000_000 for k in range(100)]
    status = driver.health.status()
    assert status.level == DiagnosticStatus.OK
    assert {v.key: v.value for v in status.values}["samples published"] == "1000"


def test_driver_configure_fails_with_the_missing_bag_named(rclpy_context, tmp_path):
    driver = EmgDriver(context=rclpy_context, parameter_overrides=params(
        source="bag", bag_path=str(tmp_path / "nowhere")))
    assert driver.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert "nowhere" in driver.health.error
    assert driver.health.status().level == DiagnosticStatus.ERROR


def test_driver_names_the_topic_a_bag_lacks(rclpy_context, tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer

    from emg_msk_ros.io.typestore import typestore

    store = typestore()
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/session/metadata", "std_msgs/msg/String", typestore=store)
        writer.write(conn, 1, store.serialize_cdr(store.types["std_msgs/msg/String"](data="x"),
                                                  "std_msgs/msg/String"))
    driver = EmgDriver(context=rclpy_context, parameter_overrides=params(
        source="bag", bag_path=str(tmp_path / "bag")))
    assert driver.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert "/emg/raw" in driver.health.error


def test_driver_lsl_without_pylsl_fails_configure_with_the_reason(rclpy_context, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pylsl", None)
    driver = EmgDriver(context=rclpy_context, parameter_overrides=params(source="lsl"))
    assert driver.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert "pylsl" in driver.health.error


def test_driver_parameters_are_range_checked(rclpy_context):
    with pytest.raises(Exception, match="chunk_size"):
        EmgDriver(context=rclpy_context, parameter_overrides=params(chunk_size=0))
    with pytest.raises(ValueError, match="source must be one of"):
        EmgDriver(context=rclpy_context, parameter_overrides=params(source="usb"))
    driver = EmgDriver(context=rclpy_context)
    refused = driver.set_parameters(params(source="usb", rate=500.0))
    assert not refused[0].successful and "sim, bag, file, lsl" in refused[0].reason
    assert not refused[1].successful and "rate" in refused[1].reason
    descriptor = driver.describe_parameter("rate")
    assert descriptor.floating_point_range[0].to_value == 100.0


# -- emg_conditioner -------------------------------------------------------------------------

@pytest.fixture
def calibration_file(tmp_path):
    settings = load_settings()
    calibration = compute_calibration(raw_emg(2.0, seed=1), FS, CHANNELS, settings)
    return calibration.save(tmp_path / "calibration.yaml"), settings, calibration


@pytest.mark.kernels
def test_conditioner_output_equals_the_offline_conditioning(rclpy_context, executor,
                                                             calibration_file):
    path, settings, calibration = calibration_file
    node = EmgConditioner(context=rclpy_context, parameter_overrides=params(
        model="", calibration_file=str(path)))
    talker = rclpy.create_node("talker", context=rclpy_context)
    publisher = talker.create_publisher(EmgArray, "emg/raw", sensor_qos(500))
    got = collect(talker, EmgArray, "emg/envelope")
    executor.add_node(node)
    executor.add_node(talker)
    assert spin_until(executor, lambda: matched(node, talker))
    emg = raw_emg(0.4)
    start = 10**18
    sizes = [7, 13, 20, 1, 19] * 20
    first = 0
    for size in sizes:
        publisher.publish(emg_message(emg[first:first + size], first,
                                      start + round(first * 1e9 / FS)))
        first += size
        executor.spin_once(timeout_sec=0.001)
    expected = condition_offline(emg.astype(np.float64), FS, CHANNELS, settings,
                                 calibration).excitation
    assert spin_until(executor, lambda: sum(m.num_samples for m in got) == expected.shape[0])
    live = np.concatenate([np.asarray(m.data).reshape(m.num_samples, 4) for m in got])
    np.testing.assert_allclose(live, expected.astype(np.float32), rtol=0, atol=1e-7)
    index = np.concatenate([m.first_sample_index + np.arange(m.num_samples) for m in got])
    np.testing.assert_array_equal(index, np.arange(expected.shape[0]))
    for m in got:  # stamp = acquisition time of the block's last raw sample, index 20·k + 19
        raw = m.first_sample_index * 20 + 19
        assert m.header.stamp.sec * 10**9 + m.header.stamp.nanosec == start + round(raw * 1e9 / FS)
        assert m.unit == EmgArray.UNIT_EXCITATION and m.sample_rate == 100.0


def test_conditioner_reports_dropped_samples(rclpy_context, calibration_file):
    node = EmgConditioner(context=rclpy_context, parameter_overrides=params(
        model="", calibration_file=str(calibration_file[0])))
    emg = raw_emg(0.1)
    node.on_raw(emg_message(emg[:10], 0, 0))
    node.on_raw(emg_message(emg[30:40], 30, 0))
    assert node.health.dropped == 20
    status = node.health.status()
    assert status.level == DiagnosticStatus.WARN and "20 sample(s) dropped" in status.message


def test_conditioner_withholds_the_envelope_while_a_channel_is_flat(rclpy_context,
                                                                   calibration_file):
    node = EmgConditioner(context=rclpy_context, parameter_overrides=params(
        model="", calibration_file=str(calibration_file[0])))
    sent: list = []
    node.publisher = SimpleNamespace(publish=sent.append)
    emg = raw_emg(1.5)
    emg[500:1500, 1] = 0.0  # VM: electrode off for 0.5 s
    emg[500:1500, 2] = np.nan  # BF: invalid samples, held by the conditioner
    levels, published = [], []
    for first in range(0, emg.shape[0], 50):
        before = len(sent)
        node.on_raw(emg_message(emg[first:first + 50], first, 0))
        levels.append(node.health.status().level)
        published.append(len(sent) > before)
    levels, published = np.array(levels), np.array(published)
    # quality windows of 0.25 s (10 chunks): [500, 1000) is judged flat with chunk 19, the
    # first window with signal again, [1500, 2000), with chunk 39
    assert published[:19].all() and (levels[:19] != DiagnosticStatus.ERROR).all()
    assert not published[19:39].any() and (levels[19:39] == DiagnosticStatus.ERROR).all()
    assert published[39:].all() and (levels[39:] != DiagnosticStatus.ERROR).all()
    node.on_raw(emg_message(np.zeros((500, 4), np.float32), emg.shape[0], 0))
    assert len(sent) == published.sum()
    assert "flat signal on channel(s) RF, VM, BF, ST" in node.health.error
    # a 0.25 s jump in the stream restarts the filters, not the verdict: still withheld
    for first in range(emg.shape[0] + 1000, emg.shape[0] + 1500, 50):
        node.on_raw(emg_message(np.zeros((50, 4), np.float32), first, 0))
    assert node.health.dropped == 500 and len(sent) == published.sum()
    assert "flat signal" in node.health.error


def test_conditioner_refuses_raw_chunks_in_another_unit_until_volts_return(rclpy_context,
                                                                          calibration_file):
    node = EmgConditioner(context=rclpy_context, parameter_overrides=params(
        model="", calibration_file=str(calibration_file[0])))
    emg = raw_emg(0.1)
    node.on_raw(emg_message(emg[:100], 0, 0))
    node.on_raw(emg_message(emg[100:150], 100, 0, unit=EmgArray.UNIT_EXCITATION))
    assert "is not UNIT_VOLT" in node.health.error
    node.on_raw(emg_message(emg[150:], 150, 0))
    assert node.health.error is None


def test_conditioner_refuses_a_stream_with_other_channels_than_the_model(rclpy_context):
    node = EmgConditioner(context=rclpy_context, parameter_overrides=params(model=MODEL))
    expected = load_model(resolve_model(MODEL)).channel_names
    node.on_raw(emg_message(np.zeros((10, 2), np.float32), 0, 0, names=["A", "B"]))
    assert node.conditioner is None and not node.health.published
    status = node.health.status()
    assert status.level == DiagnosticStatus.ERROR
    assert str(expected) in status.message and "['A', 'B']" in status.message


def test_conditioner_takes_the_models_settings_without_loading_torch(tmp_path):
    # a fresh interpreter (this one has torch loaded already), outside the source tree
    code = ("import sys\n"
            "from emg_msk_ros.nodes.emg_conditioner import EmgConditioner\n"
            f"settings, calibration, expected = "
            f"EmgConditioner._load({str(resolve_model(MODEL))!r}, '', '')\n"
            "print(expected[0], calibration.reference_for(expected[0]).shape, "
            "'torch' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    channels = load_model(resolve_model(MODEL)).channel_names
    assert run.stdout.strip() == f"{channels} ({len(channels)},) False"


# -- msk_estimator ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def estimator():
    return load_model(resolve_model(MODEL))


def envelope(n: int, channels: int, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.cumsum(rng.normal(0, 0.03, (n, channels)), axis=0) + 0.3, 0, 1).astype(
        np.float32)


@pytest.mark.kernels
def test_estimator_output_equals_the_offline_estimate(rclpy_context, executor, estimator):
    node = MskEstimator(context=rclpy_context, parameter_overrides=params(model=MODEL))
    talker = rclpy.create_node("talker", context=rclpy_context)
    publisher = talker.create_publisher(EmgArray, "emg/envelope", sensor_qos(500))
    joints = collect(talker, JointState, "msk/joint_states", 500)
    muscles = collect(talker, MuscleState, "msk/muscle_states", 500)
    executor.add_node(node)
    executor.add_node(talker)
    assert spin_until(executor, lambda: matched(node, talker, ignore=["/msk/markers"]))
    w, rate, names = estimator.window, estimator.model_rate, estimator.channel_names
    env = envelope(w + 40, len(names))
    start = 10**18 + 5
    for first in range(0, env.shape[0], 3):
        block = env[first:first + 3]
        publisher.publish(emg_message(block, first, start + round(first * 1e9 / rate),
                                      names=names, rate=rate, unit=EmgArray.UNIT_EXCITATION))
        executor.spin_once(timeout_sec=0.001)
    offline = estimate_offline(estimator, env)
    n = offline["angle"].size
    assert n == 41
    assert spin_until(executor, lambda: len(joints) == n and len(muscles) == n)
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in joints]
    assert stamps == [start + round(i * 1e9 / rate) for i in offline["index"]]
    np.testing.assert_allclose([m.position[0] for m in joints], offline["angle"], atol=1e-5)
    np.testing.assert_allclose([m.velocity[0] for m in joints], offline["velocity"], atol=1e-3)
    np.testing.assert_allclose([m.effort[0] for m in joints], offline["net_moment"],
                               rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose([m.force for m in muscles], offline["force"], rtol=1e-4,
                               atol=1e-3)
    assert list(muscles[0].names) == estimator.muscle_names
    assert list(joints[0].name) == [estimator.joint_name]


def test_estimator_takes_the_sessions_rest_levels_from_its_calibration(rclpy_context,
                                                                        estimator, tmp_path):
    names = estimator.channel_names
    references = dict(zip(names, [1e-4, 2e-4, 3e-4, 4e-4, 5e-4][:len(names)]))
    rest = {name: 0.03 * ref for name, ref in references.items()}
    signature = estimator.conditioner_settings.envelope_signature()
    with_rest = Calibration(references=references, conditioning=signature, rest=rest)
    without = Calibration(references=references, conditioning=signature)
    nodes = {}
    for label, calibration in (("rest", with_rest), ("mvc only", without)):
        path = calibration.save(tmp_path / f"{label}.yaml")
        nodes[label] = MskEstimator(context=rclpy_context, parameter_overrides=params(
            model=MODEL, calibration_file=str(path)))
    np.testing.assert_allclose(nodes["rest"].estimator.baseline, 0.03, rtol=1e-6)
    np.testing.assert_array_equal(nodes["mvc only"].estimator.baseline, estimator.baseline)
    for node in nodes.values():
        node.destroy_node()


def test_estimator_bridges_short_gaps_and_restarts_after_long_ones(rclpy_context, estimator):
    node = MskEstimator(context=rclpy_context, parameter_overrides=params(
        model=MODEL, max_bridge_steps=3))
    w, rate, names = estimator.window, estimator.model_rate, estimator.channel_names
    env = envelope(3 * w, len(names))

    def feed(first, count):
        node.on_envelope(emg_message(env[first:first + count], first, 0, names=names,
                                     rate=rate, unit=EmgArray.UNIT_EXCITATION))

    feed(0, w)
    assert node.estimates == 1
    feed(w + 2, 5)  # 2 samples missing: held over (no estimates for them), window stays full
    assert node.estimates == 1 + 5 and node.health.dropped == 2
    held = np.concatenate([env[:w], np.repeat(env[w - 1:w], 2, axis=0), env[w + 2:w + 7]])
    np.testing.assert_array_equal(node.window.view(), held[-w:])
    feed(w + 17, 5)  # 10 missing: more than max_bridge_steps, the window starts over
    assert node.estimates == 6 and node.health.dropped == 12 and node.window.filled == 5
    feed(w + 22, w - 5)
    assert node.estimates == 7
    feed(2 * w + 14, 3)  # the last 3 samples again: skipped as repeats
    assert node.estimates == 7 and node.health.repeated == 3


def test_estimator_refuses_non_finite_excitation_then_resumes(rclpy_context, estimator):
    node = MskEstimator(context=rclpy_context, parameter_overrides=params(model=MODEL))
    w, rate, names = estimator.window, estimator.model_rate, estimator.channel_names
    env = envelope(w + 10, len(names))
    env[w:w + 5, 0] = np.nan

    def feed(first, count):
        node.on_envelope(emg_message(env[first:first + count], first, 0, names=names,
                                     rate=rate, unit=EmgArray.UNIT_EXCITATION))

    feed(0, w)
    assert node.estimates == 1
    feed(w, 5)
    assert node.estimates == 1 and "NaN/Inf excitation" in node.health.error
    assert "chunk at sample 70 holds NaN/Inf" in node.health.problems
    assert node.health.status().level == DiagnosticStatus.ERROR
    feed(w + 5, 5)  # finite again: the 5 refused samples are bridged, estimates resume
    assert node.estimates == 6 and node.health.error is None


@pytest.mark.parametrize("change, reason", [
    ({"names": ["A", "B", "C", "D"]}, "expects EMG channels"),
    ({"rate": 50.0}, "50 Hz"),
    ({"unit": EmgArray.UNIT_VOLT}, "UNIT_EXCITATION"),
])
def test_estimator_refuses_an_envelope_that_does_not_fit_the_model(rclpy_context, estimator,
                                                                   change, reason):
    node = MskEstimator(context=rclpy_context, parameter_overrides=params(model=MODEL))
    names = change.get("names", estimator.channel_names)
    msg = emg_message(envelope(estimator.window, len(names)), 0, 0, names=names,
                      rate=change.get("rate", estimator.model_rate),
                      unit=change.get("unit", EmgArray.UNIT_EXCITATION))
    node.on_envelope(msg)
    assert node.estimates == 0 and node.window.filled == 0
    status = node.health.status()
    assert status.level == DiagnosticStatus.ERROR and reason in status.message


def test_sliding_window_holds_the_last_samples_in_order():
    window = SlidingWindow(5, 2)
    history = np.arange(40, dtype=np.float32).reshape(20, 2)
    for k, sample in enumerate(history):
        window.push(sample)
        assert window.full == (k >= 4)
        if window.full:
            np.testing.assert_array_equal(window.view(), history[k - 4:k + 1])
    window.clear()
    assert window.filled == 0 and not window.full


def test_limb_markers_draw_flexors_behind_and_scale_with_force():
    markers = LimbMarkers(["flexor", "extensor"], "emg_msk")
    array = markers.update(0.0, np.array([0.03, -0.04]), np.array([1.0, 0.0]), to_stamp(7))
    lines = [m for m in array.markers if m.ns == "muscles"]
    flexor, extensor = lines
    assert all(p.x < 0 for p in flexor.points) and all(p.x > 0 for p in extensor.points)
    assert flexor.scale.x > extensor.scale.x
    assert (flexor.color.r, flexor.color.b) == (1.0, 0.0)
    assert (extensor.color.r, extensor.color.b) == (0.0, 1.0)
    assert all(m.header.frame_id == "emg_msk" and m.header.stamp.nanosec == 7
               for m in array.markers)
    bent = markers.update(np.pi / 2, np.array([0.03, -0.04]), np.array([0.5, 0.5]), to_stamp(8))
    distal = bent.markers[0].points[3]  # flexion swings the distal segment backwards
    assert distal.x == pytest.approx(-0.4) and distal.z == pytest.approx(0.0, abs=1e-12)
