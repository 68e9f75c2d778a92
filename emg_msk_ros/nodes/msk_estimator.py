"""``msk_estimator``: ``emg/envelope`` → joint and muscle estimates with a trained model.

Keeps the last ``window`` excitation samples and, for every new one once the window is full,
runs the model (:mod:`emg_msk_ros.learning.inference`: ONNX Runtime, no torch) and publishes,
stamped with that envelope sample's stamp (the acquisition time of the newest EMG sample it
derives from):

- ``msk/joint_states`` (sensor_msgs/JointState): position = angle (rad), velocity (rad/s),
  effort = net muscle moment (N·m);
- ``msk/muscle_states`` (MuscleState): activation, force (N), moment (N·m);
- ``msk/markers`` (MarkerArray, for rviz): the limb segments at the estimated angle and each
  muscle as a line whose colour (blue → red) and width follow its force relative to F0; every
  ``markers_every``-th estimate, and only while something subscribes (building the array costs
  about as much as the inference).

``calibration_file`` (the session's calibration, as given to ``emg_conditioner``): when it holds
rest levels, they replace the model's resting baseline (the first training session's), so the
network sees this session's excitation above rest. An envelope whose channels or rate differ
from the model's is refused (ERROR on ``/diagnostics``), and so is a chunk holding NaN/Inf (no
estimate from it: the assist controller's watchdog sees the silence). A gap of up to
``max_bridge_steps`` samples is bridged by holding the last sample; a longer one empties the
window (no estimates until it refills).

A state-aided model (:mod:`emg_msk_ros.learning.state_inference`) also reads the exoskeleton's
measured joint state from ``joint_state_topic`` (sensor_msgs/JointState, default
``joint_states``, the joint ``joint_name``, default the model's). Each envelope sample takes the
newest reading stamped at or before its own stamp (:mod:`emg_msk_ros.learning.joint_input`, as
training and offline evaluation do). Nothing is ever substituted: with no reading, a reading
older than ``max_joint_state_age`` s (by stamp), or one without the joint or its velocity, the
node publishes nothing and reports ERROR (so the assist controller's watchdog zeroes the torque);
estimates resume once a full window of valid joint states has come in again. It then also
publishes

- ``msk/joint_prediction`` (sensor_msgs/JointState): position = the angle (rad) and velocity
  (rad/s) the model predicts ``horizon`` after the stamp; the stamp is, as on every output,
  that of the newest EMG sample the prediction derives from (so latency stays measurable from
  stamps); the horizon is the model's (``ahead.horizon_ms`` in model.yaml, and on
  ``/diagnostics``).

A state-aided model with ``joint_state_topic`` empty is refused at start-up.
"""

from __future__ import annotations

import collections
import math
import time

import numpy as np
from geometry_msgs.msg import Point
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from emg_msk_ros.learning.inference import (
    Estimator,
    ModelError,
    load_model,
    refuse_without_joint_state,
)
from emg_msk_ros.msg import EmgArray, MuscleState
from emg_msk_ros.nodes.common import (
    TOPIC_ENVELOPE,
    TOPIC_JOINT,
    TOPIC_MARKERS,
    TOPIC_MUSCLES,
    TOPIC_PREDICTION,
    Health,
    chunk_values,
    declare,
    declare_common,
    resolve_model,
    sensor_qos,
    stamp_ns,
    to_stamp,
)
from emg_msk_ros.signal.calibration import Calibration

# Schematic limb for the markers (m): proximal segment up from the joint, distal one hanging.
SEGMENT_LENGTH = 0.4
MUSCLE_OFFSET = 0.05  # how far a muscle line runs from the bone, per 1 cm of moment arm / 1 cm
WIDTH_MIN, WIDTH_MAX = 0.004, 0.03  # line width at zero and at full (F0) force, m


class SlidingWindow:
    """The last ``length`` samples of a (n, channels) stream, oldest first, without copies."""

    def __init__(self, length: int, channels: int) -> None:
        self.length = length
        self._buffer = np.zeros((2 * length, channels), dtype=np.float32)
        self._end = 0
        self.filled = 0

    def push(self, sample: np.ndarray) -> None:
        """Append one sample (channels,)."""
        if self._end == self._buffer.shape[0]:
            keep = self.length - 1
            self._buffer[:keep] = self._buffer[self._end - keep:self._end]
            self._end = keep
        self._buffer[self._end] = sample
        self._end += 1
        self.filled = min(self.filled + 1, self.length)

    @property
    def full(self) -> bool:
        """True once ``length`` samples have been pushed since the last clear."""
        return self.filled == self.length

    def view(self) -> np.ndarray:
        """The window (length, channels), oldest first; valid until the next push."""
        return self._buffer[self._end - self.length:self._end]

    def last(self) -> np.ndarray:
        """The newest sample."""
        return self._buffer[self._end - 1]

    def clear(self) -> None:
        """Forget every sample."""
        self._end = 0
        self.filled = 0


def _colour(marker: Marker, ratio: float) -> None:
    """Blue at no force, red at F0 (ratio = F / F0, clipped to 0..1)."""
    r = min(max(ratio, 0.0), 1.0)
    marker.color.r, marker.color.g, marker.color.b = r, 0.2 * (1.0 - r), 1.0 - r
    marker.color.a = 1.0


class LimbMarkers:
    """Markers of a schematic limb for rviz, updated in place for each estimate.

    The proximal segment points up from the joint, the distal one hangs down and rotates
    backwards with flexion (positive angle). Each muscle is a line from the proximal segment to
    the distal one, drawn behind the bone when its moment arm is positive (a flexor), further
    out for a longer moment arm; its colour (blue → red) and width follow F / F0.
    """

    def __init__(self, names: list[str], frame_id: str) -> None:
        self.names = list(names)
        bones = Marker(ns="segments", id=0, type=Marker.LINE_LIST, action=Marker.ADD,
                       points=[Point(z=SEGMENT_LENGTH), Point(), Point(), Point()])
        bones.scale.x = 0.03
        bones.color = ColorRGBA(r=0.8, g=0.8, b=0.8, a=1.0)
        self._muscles = [Marker(ns="muscles", id=i, type=Marker.LINE_STRIP, action=Marker.ADD,
                                points=[Point(), Point()], text=name)
                         for i, name in enumerate(self.names)]
        self._label = Marker(ns="angle", id=0, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
        self._label.pose.position.z = SEGMENT_LENGTH + 0.08
        self._label.scale.z = 0.05
        self._label.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
        self._distal = bones.points[3]
        self.array = MarkerArray(markers=[bones, *self._muscles, self._label])
        for marker in self.array.markers:
            marker.header.frame_id = frame_id
            marker.pose.orientation.w = 1.0

    def update(self, angle: float, arms: np.ndarray, force_ratio: np.ndarray, stamp) -> MarkerArray:
        """Pose the limb at ``angle`` (rad) with moment arms ``arms`` (m) and F/F0 per muscle."""
        s, c = math.sin(angle), math.cos(angle)
        self._distal.x, self._distal.z = -SEGMENT_LENGTH * s, -SEGMENT_LENGTH * c
        count = len(self.names)
        for i, marker in enumerate(self._muscles):
            side = -1.0 if arms[i] > 0 else 1.0
            offset = side * (0.02 + MUSCLE_OFFSET * min(abs(float(arms[i])) / 0.01, 1.0))
            reach = SEGMENT_LENGTH * (0.15 + 0.05 * i / max(count - 1, 1))
            origin, insertion = marker.points
            origin.x, origin.z = offset, SEGMENT_LENGTH * (0.9 - 0.1 * i / count)
            insertion.x, insertion.z = -reach * s + offset * c, -reach * c - offset * s
            ratio = min(max(float(force_ratio[i]), 0.0), 1.0)
            marker.scale.x = WIDTH_MIN + (WIDTH_MAX - WIDTH_MIN) * ratio
            _colour(marker, ratio)
        self._label.text = f"{math.degrees(angle):.1f} deg"
        for marker in self.array.markers:
            marker.header.stamp = stamp
        return self.array


class JointStateBuffer:
    """The recent readings of one joint from sensor_msgs/JointState messages, by stamp."""

    def __init__(self, joint: str, keep: int = 1024) -> None:
        self.joint = joint
        self._readings: collections.deque[tuple[int, float, float]] = collections.deque(
            maxlen=keep)
        self.problem = "no joint state received yet"

    def add(self, msg: JointState) -> None:
        """Store the message's reading of the joint, or note why it has none."""
        if self.joint not in msg.name:
            self.problem = (f"joint_states name {list(msg.name)}, not the model's joint "
                            f"{self.joint!r}")
            return
        i = list(msg.name).index(self.joint)
        if len(msg.position) <= i or len(msg.velocity) <= i:
            self.problem = f"joint_states lacks the position or velocity of {self.joint!r}"
            return
        angle, velocity = float(msg.position[i]), float(msg.velocity[i])
        if not (math.isfinite(angle) and math.isfinite(velocity)):
            self.problem = f"joint_states holds NaN/Inf for {self.joint!r}"
            return
        stamp = stamp_ns(msg.header.stamp)
        if self._readings and stamp <= self._readings[-1][0]:
            self.problem = f"joint_states stamp went back or repeated ({stamp} ns)"
            return
        self._readings.append((stamp, angle, velocity))
        self.problem = ""

    def at(self, stamp: int, max_age: float) -> tuple[np.ndarray | None, str]:
        """(angle rad, velocity rad/s) of the newest reading stamped at or before ``stamp``
        (ns) and at most ``max_age`` s older; else (None, why)."""
        for when, angle, velocity in reversed(self._readings):
            if when <= stamp:
                age = (stamp - when) * 1e-9
                if age > max_age:  # one message for the whole stretch (logged once)
                    return None, (f"joint state of {self.joint!r} more than "
                                  f"{1000 * max_age:g} ms older than the EMG; "
                                  + (self.problem if self.problem else "no newer reading"))
                return np.array([angle, velocity], dtype=np.float32), ""
        return None, (self.problem or f"no joint state of {self.joint!r} at or before the EMG")


class MskEstimator(Node):
    """Sliding-window inference at the model rate."""

    def __init__(self, **kwargs) -> None:
        super().__init__("msk_estimator", **kwargs)
        model = declare(self, "model", "knee", "model folder (or name under the package's "
                        "models/)")
        calibration_file = declare(self, "calibration_file", "", "the session's calibration "
                                   "YAML; its rest levels replace the model's resting baseline")
        self.max_bridge_steps = declare(self, "max_bridge_steps", 5, "envelope gap (samples) "
                                        "bridged by holding the last sample; longer gaps empty "
                                        "the window", low=0, high=1000)
        frame_id = declare(self, "frame_id", "emg_msk", "frame of msk/markers")
        self.markers_every = declare(self, "markers_every", 1, "publish msk/markers for every "
                                     "n-th estimate (1: at the model rate)", low=1, high=1000)
        threads = declare(self, "inference_threads", 1, "ONNX Runtime CPU threads of the "
                          "network (one is fastest at this size and leaves the CPU to the other "
                          "nodes)", low=1, high=64)
        depth, period, stale = declare_common(self)
        self.estimator: Estimator = load_model(resolve_model(model), threads)
        state_topic = declare(self, "joint_state_topic", "joint_states", "the exoskeleton's "
                              "measured joint states (sensor_msgs/JointState), read when the "
                              "model is state-aided")
        joint_name = declare(self, "joint_name", "", "joint to read from joint_state_topic "
                             "(empty: the model's joint)")
        self.max_joint_state_age = declare(
            self, "max_joint_state_age", 0.05, "s: a joint-state reading older than this (by "
            "stamp) at an EMG sample is stale: no estimate", low=0.001, high=10.0)
        self.joint_states: JointStateBuffer | None = None
        if self.estimator.needs_joint_state:
            if not state_topic:
                refuse_without_joint_state(self.estimator, "joint_state_topic ''")
            self.joint_states = JointStateBuffer(joint_name or self.estimator.joint_name)
        if calibration_file:
            self._use_rest_levels(Calibration.load(calibration_file), calibration_file)
        self.health = Health(self, "musculoskeletal estimate", period=period,
                             stale_after=stale, extra=self._diagnostic_values)
        est = self.estimator
        self.window = SlidingWindow(est.window, len(est.channel_names))
        self.state_window = SlidingWindow(est.window, 2)
        self.max_force = np.asarray(est.muscles.max_isometric_force, dtype=np.float64)
        self.markers = LimbMarkers(est.muscle_names, frame_id)
        self.next_index: int | None = None
        self.estimates = 0
        self._inference_ms: collections.deque[float] = collections.deque(maxlen=1000)
        self.joint_publisher = self.create_publisher(JointState, TOPIC_JOINT, 10)
        self.muscle_publisher = self.create_publisher(MuscleState, TOPIC_MUSCLES, 10)
        self.marker_publisher = self.create_publisher(MarkerArray, TOPIC_MARKERS, 10)
        if self.joint_states is not None:
            self.prediction_publisher = self.create_publisher(JointState, TOPIC_PREDICTION, 10)
            self.create_subscription(JointState, state_topic, self.on_joint_state,
                                     sensor_qos(depth))
        self.subscription = self.create_subscription(EmgArray, TOPIC_ENVELOPE, self.on_envelope,
                                                     sensor_qos(depth))
        self.get_logger().info(
            f"model {est.path}: channels {est.channel_names} at {est.model_rate:g} Hz, window "
            f"{est.window} samples, muscles {est.muscle_names}")

    def _use_rest_levels(self, calibration: Calibration, path: str) -> None:
        rest = calibration.rest_excitation_for(self.estimator.channel_names)
        if rest is None:
            self.get_logger().info(f"{path} has no rest levels; keeping the model's baseline")
            return
        self.estimator.baseline = rest
        self.get_logger().info(f"resting baseline from {path}: {np.round(rest, 4).tolist()}")

    def _diagnostic_values(self) -> dict:
        values = {"model": str(self.estimator.path), "estimates": self.estimates}
        if self.joint_states is not None:
            values["horizon (ms)"] = f"{1000 * self.estimator.horizon_s:g}"
        if self._inference_ms:
            times = np.asarray(self._inference_ms)
            values["inference p50 (ms)"] = f"{np.percentile(times, 50):.3f}"
            values["inference p99 (ms)"] = f"{np.percentile(times, 99):.3f}"
        return values

    def _accept(self, msg: EmgArray) -> np.ndarray | None:
        """The chunk's excitation (samples, channels), or None when it is refused (ERROR)."""
        est = self.estimator
        if msg.unit != EmgArray.UNIT_EXCITATION:
            self.health.fail(f"refusing emg/envelope: unit {msg.unit} is not UNIT_EXCITATION")
            return None
        try:
            est.check_channels(msg.channel_names)
        except ModelError as exc:
            self.health.fail(f"refusing emg/envelope: {exc}")
            return None
        if abs(msg.sample_rate - est.model_rate) > 1e-6 * est.model_rate:
            self.health.fail(f"refusing emg/envelope at {msg.sample_rate:g} Hz: model "
                             f"{est.path} runs at {est.model_rate:g} Hz")
            return None
        data = chunk_values(msg, len(est.channel_names), self.health)
        if data is None:
            return None
        if not np.isfinite(data).all():  # the conditioner never sends these; another source may
            self.health.note(f"chunk at sample {msg.first_sample_index} holds NaN/Inf")
            self.health.fail("refusing emg/envelope: NaN/Inf excitation; no estimate until "
                             "finite data returns")
            return None
        if self.health.error is not None:
            self.get_logger().info("emg/envelope is usable again; estimating")
        self.health.error = None
        return data

    def _align(self, first: int, count: int) -> int:
        """Handle a jump in the envelope index; return how many leading samples to skip."""
        expected, self.next_index = self.next_index, first + count
        if expected is None or first == expected:
            return 0
        jump = first - expected
        if -self.max_bridge_steps <= jump < 0:
            self.health.repeated += min(-jump, count)
            self.next_index = max(expected, first + count)
            return min(-jump, count)
        if 0 < jump <= self.max_bridge_steps and self.window.filled:
            self.health.dropped += jump
            held = self.window.last().copy()
            for _ in range(jump):
                self.window.push(held)
            self.health.note(f"{jump} envelope sample(s) missing; bridged")
            return 0
        if jump > 0:
            self.health.dropped += jump
            self.health.note(f"{jump} envelope sample(s) missing; window restarted")
        else:
            self.health.note(f"envelope stream restarted at sample {first}; window restarted")
        self.window.clear()
        return 0

    def on_envelope(self, msg: EmgArray) -> None:
        """Push each new excitation sample; once the window is full, estimate for each."""
        self.health.input(TOPIC_ENVELOPE)
        data = self._accept(msg)
        if data is None:
            return
        skip = self._align(msg.first_sample_index, msg.num_samples)
        stamp0 = stamp_ns(msg.header.stamp)
        period_ns = 1e9 / msg.sample_rate
        for i in range(skip, msg.num_samples):
            self.window.push(data[i])
            stamp = stamp0 + round(i * period_ns)
            if self.joint_states is not None and not self._push_joint_state(stamp):
                continue
            if self.window.full and (self.joint_states is None or self.state_window.full):
                self._estimate(stamp, msg.header.frame_id)

    def on_joint_state(self, msg: JointState) -> None:
        """Keep the exoskeleton's reading of the model's joint (or note why it is unusable)."""
        self.joint_states.add(msg)

    def _push_joint_state(self, stamp: int) -> bool:
        """Push the joint state held at ``stamp`` (ns); False (ERROR, the state window
        emptied) when there is none usable."""
        reading, problem = self.joint_states.at(stamp, self.max_joint_state_age)
        if reading is None:
            self.state_window.clear()
            self.health.fail(f"no estimate: {problem}")
            return False
        self.state_window.push(reading)
        return True

    def _estimate(self, stamp: int, frame_id: str) -> None:
        est = self.estimator
        start = time.perf_counter()
        if self.joint_states is None:
            estimate = est.predict(self.window.view())
        else:
            estimate = est.predict(self.window.view(), self.state_window.view())
        self._inference_ms.append((time.perf_counter() - start) * 1e3)
        self.estimates += 1
        header_stamp = to_stamp(stamp)
        joint = JointState(name=[est.joint_name], position=[estimate.angle],
                           velocity=[estimate.velocity], effort=[estimate.net_moment])
        joint.header.stamp = header_stamp
        joint.header.frame_id = frame_id
        self.joint_publisher.publish(joint)  # before the Hill inversion (estimate.activation)
        muscles = MuscleState(names=est.muscle_names, joint_names=[est.joint_name],
                              activation=estimate.activation.tolist(),
                              force=estimate.force.tolist(), moment=estimate.moment.tolist())
        muscles.header = joint.header
        self.muscle_publisher.publish(muscles)
        self.health.output(TOPIC_JOINT)
        self.health.output(TOPIC_MUSCLES)
        if self.joint_states is not None:
            prediction = JointState(name=[est.joint_name], position=[estimate.angle_ahead],
                                    velocity=[estimate.velocity_ahead])
            prediction.header = joint.header
            self.prediction_publisher.publish(prediction)
            self.health.output(TOPIC_PREDICTION)
        if self.estimates % self.markers_every == 0 and \
                self.marker_publisher.get_subscription_count():
            arms = est.preset.moment_arms(np.float64(estimate.angle))
            self.marker_publisher.publish(self.markers.update(
                estimate.angle, arms, estimate.force / self.max_force, header_stamp))
            self.health.output(TOPIC_MARKERS)


def main(argv=None) -> int:
    """Run the estimator until Ctrl-C."""
    from emg_msk_ros.nodes.common import node_main

    return node_main(MskEstimator, argv)


if __name__ == "__main__":
    raise SystemExit(main())
