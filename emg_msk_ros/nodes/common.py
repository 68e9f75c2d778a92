"""What every node of the graph shares: parameter declaration with ranges, the sensor-data QoS of
the EMG topics, stamps, model paths, health on ``/diagnostics``, and ``main()``.
"""

from __future__ import annotations

import array
import collections
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data

from emg_msk_ros.paths import models_dir

TOPIC_RAW = "emg/raw"
TOPIC_ENVELOPE = "emg/envelope"
TOPIC_JOINT = "msk/joint_states"
TOPIC_MUSCLES = "msk/muscle_states"
TOPIC_MARKERS = "msk/markers"
TOPIC_PREDICTION = "msk/joint_prediction"
TOPIC_DIAGNOSTICS = "/diagnostics"


def declare(node: Node, name: str, default: Any, description: str, *,
            low: float | None = None, high: float | None = None,
            choices: Sequence[str] | None = None, read_only: bool = True) -> Any:
    """Declare a parameter with a descriptor (and range) and return its value.

    Numbers take an inclusive range [low, high] that rclpy enforces on every set. ``choices``
    restricts a string. Parameters the node reads only at start-up are ``read_only``.
    """
    descriptor = ParameterDescriptor(name=name, description=description, read_only=read_only)
    if low is not None or high is not None:
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            raise TypeError(f"parameter {name}: a range needs a numeric default")
        if isinstance(default, int):
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high),
                                                     step=0)]
        else:
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(low), to_value=float(high), step=0.0)]
    if choices is not None:
        descriptor.additional_constraints = f"one of: {', '.join(choices)}"
    value = node.declare_parameter(name, default, descriptor).value
    if choices is not None:
        if value not in choices:
            raise ValueError(f"parameter {node.get_name()}.{name} must be one of "
                             f"{', '.join(choices)}, got {value!r}")
        if not read_only:
            node.add_on_set_parameters_callback(
                lambda params: _check_choice(name, tuple(choices), params))
    return value


def _check_choice(name: str, choices: tuple[str, ...], params) -> SetParametersResult:
    for param in params:
        if param.name == name and param.value not in choices:
            return SetParametersResult(
                successful=False, reason=f"{name} must be one of {', '.join(choices)}, got "
                                         f"{param.value!r}")
    return SetParametersResult(successful=True)


def declare_common(node: Node) -> tuple[int, float, float]:
    """Declare ``qos_depth``, ``diagnostics_period`` (s), ``stale_timeout`` (s); return them."""
    depth = declare(node, "qos_depth", 50, "history depth of the EMG topics (sensor-data QoS: "
                    "best effort, keep last)", low=1, high=1000)
    period = declare(node, "diagnostics_period", 1.0, "s between /diagnostics messages",
                     low=0.05, high=60.0)
    stale = declare(node, "stale_timeout", 0.5, "s without input after which the input is "
                    "reported stale", low=0.01, high=60.0)
    return depth, period, stale


def sensor_qos(depth: int) -> QoSProfile:
    """The sensor-data profile (best effort, volatile, keep last) with ``depth``."""
    profile = QoSProfile(depth=depth)
    profile.history = qos_profile_sensor_data.history
    profile.reliability = qos_profile_sensor_data.reliability
    profile.durability = qos_profile_sensor_data.durability
    return profile


def stamp_ns(stamp: Time) -> int:
    """A builtin_interfaces/Time as integer ns."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def to_stamp(ns: int) -> Time:
    """Integer ns as a builtin_interfaces/Time."""
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def float32_array(values: np.ndarray) -> array.array:
    """Values (any shape, row-major) as the ``array('f')`` a float32[] message field holds."""
    out = array.array("f")
    out.frombytes(np.ascontiguousarray(values, dtype=np.float32).tobytes())
    return out


def chunk_values(msg, n_channels: int, health: Health) -> np.ndarray | None:
    """An EmgArray's data as a (samples, channels) float32 view; None (noted on ``health``)
    when its length does not match ``num_samples`` × ``n_channels``."""
    data = np.frombuffer(msg.data, dtype=np.float32)
    if data.size != msg.num_samples * n_channels:
        health.note(f"chunk at sample {msg.first_sample_index} has {data.size} values for "
                    f"{msg.num_samples} samples x {n_channels} channels; skipped")
        return None
    return data.reshape(msg.num_samples, n_channels)


def resolve_model(name: str) -> Path:
    """A model folder: an existing path as given, else a folder of the package's ``models/``."""
    path = Path(name).expanduser()
    if path.is_dir() or path.is_absolute():
        return path
    return models_dir() / name


class Health:
    """Counts a node's traffic and problems and publishes them on ``/diagnostics``.

    Level: ERROR while ``error`` is set (the node refuses its input, e.g. a model for other
    channels), WARN when messages were dropped or repeated, a problem was noted, or the input is
    older than ``stale_after`` s during the last period, else OK. Counters are totals since
    start; rates are over the last period.
    """

    def __init__(self, node: Node, what: str, *, period: float, stale_after: float,
                 watch_input: Callable[[], bool] = lambda: True,
                 extra: Callable[[], dict[str, Any]] | None = None) -> None:
        self.node = node
        self.name = f"{node.get_name()}: {what}"
        self.stale_after = stale_after
        self.received: collections.Counter[str] = collections.Counter()
        self.published: collections.Counter[str] = collections.Counter()
        self.dropped = 0  # input samples or messages missing (sequence jumps)
        self.repeated = 0  # input samples or messages seen twice
        self.error: str | None = None
        self.problems: list[str] = []  # noted since the last report
        self.last_input = None  # time.monotonic() of the last input
        self._watch_input = watch_input
        self._extra = extra
        self._last_report = (time.monotonic(), 0, 0)
        self._publisher = node.create_publisher(DiagnosticArray, TOPIC_DIAGNOSTICS, 10)
        self._timer = node.create_timer(period, self.report)

    def input(self, topic: str) -> None:
        """Count one message received on ``topic``."""
        self.received[topic] += 1
        self.last_input = time.monotonic()

    def output(self, topic: str, count: int = 1) -> None:
        """Count messages published on ``topic``."""
        self.published[topic] += count

    def note(self, problem: str) -> None:
        """Report a problem (WARN) in the next diagnostics message."""
        if len(self.problems) < 20:
            self.problems.append(problem)

    def fail(self, error: str) -> None:
        """Enter the ERROR state with a reason (logged once per distinct reason)."""
        if error != self.error:
            self.node.get_logger().error(error)
        self.error = error

    def status(self) -> DiagnosticStatus:
        """The current status; resets the per-period problem list and rates."""
        now = time.monotonic()
        n_in, n_out = sum(self.received.values()), sum(self.published.values())
        then, last_in, last_out = self._last_report
        span = max(now - then, 1e-9)
        self._last_report = (now, n_in, n_out)
        age = None if self.last_input is None else now - self.last_input
        stale = self._watch_input() and (age is None or age > self.stale_after)
        problems, self.problems = self.problems, []
        if self.error:
            level, message = DiagnosticStatus.ERROR, self.error
        elif problems or stale:
            level = DiagnosticStatus.WARN
            message = "; ".join(problems[:3] + (
                [f"input stale ({'never received' if age is None else f'{age:.2f} s old'})"]
                if stale else []))
        else:
            level, message = DiagnosticStatus.OK, "ok"
        values = {
            "messages in": n_in, "messages out": n_out,
            "rate in (Hz)": f"{(n_in - last_in) / span:.1f}",
            "rate out (Hz)": f"{(n_out - last_out) / span:.1f}",
            "dropped": self.dropped, "repeated": self.repeated,
            "input age (s)": "never" if age is None else f"{age:.3f}",
        }
        if self._extra is not None:
            values.update(self._extra())
        return DiagnosticStatus(level=level, name=self.name, message=message,
                                hardware_id=self.node.get_fully_qualified_name(),
                                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])

    def report(self) -> None:
        """Publish the status on ``/diagnostics``."""
        array = DiagnosticArray(status=[self.status()])
        array.header.stamp = self.node.get_clock().now().to_msg()
        self._publisher.publish(array)


def spin_node(node: Node) -> int:
    """Spin ``node`` until Ctrl-C or shutdown, then destroy it; the body of each ``main()``."""
    from rclpy.executors import ExternalShutdownException

    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def node_main(factory: Callable[[], Node], argv: Sequence[str] | None = None) -> int:
    """``rclpy.init``, create the node, spin it; a start-up error is printed, exit code 1."""
    rclpy.init(args=argv)
    try:
        node = factory()
    except Exception as exc:  # noqa: BLE001 - report any start-up failure as a message
        print(f"error: {exc}", flush=True)
        rclpy.try_shutdown()
        return 1
    return spin_node(node)
