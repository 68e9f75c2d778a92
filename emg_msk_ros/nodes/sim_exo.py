"""``sim_exo``: a simulated person wearing the exoskeleton, standing in for both devices.

Publishes ``emg/raw`` (EmgArray, volts, sensor-data QoS, as ``emg_driver`` would from an
amplifier) and ``joint_states`` (sensor_msgs/JointState at the encoder's rate, as a
ros2_control joint_state_broadcaster would: reliable, depth 10), and subscribes to the assist
controller's effort commands on ``command_topic`` (std_msgs/Float64MultiArray, one value per
joint, as a ForwardCommandController takes them). The person tracks ``repeats`` copies of one
planned task of ``task_duration`` s (then its first ``extra`` s) in real time; see
:mod:`emg_msk_ros.physics.exo_plant` for the person, the actuator and the sensors. The
simulation runs in a thread of its own, released chunk by chunk by the system clock; stamps
are acquisition times on that clock. Streaming starts on :meth:`SimExo.start` (``autostart``
does that at once for ``ros2 run``/``ros2 launch``) and stops at the task's end.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from emg_msk_ros.msg import EmgArray
from emg_msk_ros.nodes.common import (
    TOPIC_RAW,
    Health,
    declare,
    declare_common,
    float32_array,
    sensor_qos,
    to_stamp,
)
from emg_msk_ros.physics.encoder import EncoderSettings
from emg_msk_ros.physics.exo_plant import ActuatorSettings, ExoPlant, PlantSettings
from emg_msk_ros.physics.motions import (REGIMES, MotionSettings, plan_task,
                                         repeat_reference)
from emg_msk_ros.physics.motor_control import MotorSettings
from emg_msk_ros.physics.preset import load_preset
from emg_msk_ros.physics.synth_emg import EmgSynthSettings

TOPIC_MEASURED = "joint_states"
RELIABLE = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)


def plant_settings(values) -> PlantSettings:
    """:class:`PlantSettings` from the node's parameter values (a name -> value mapping)."""
    return PlantSettings(
        motion=MotionSettings(regime=values["motion"], max_speed=values["max_speed"],
                              cocontraction=values["cocontraction"]),
        motor=MotorSettings(bandwidth=values["feedback_bandwidth"],
                            reaction_delay=values["reaction_delay"],
                            adaptation_time=values["adaptation_time"],
                            reflex_bandwidth=values["reflex_bandwidth"],
                            reflex_delay=values["reflex_delay"]),
        actuator=ActuatorSettings(torque_limit=values["torque_limit"],
                                  bandwidth=values["actuator_bandwidth"],
                                  delay=values["actuator_delay"],
                                  command_timeout=values["command_timeout"]),
        encoder=EncoderSettings(rate=values["encoder_rate"],
                                resolution=values["encoder_resolution"]),
        emg=EmgSynthSettings(sample_rate=values["emg_sample_rate"]))


def build_plant(values) -> tuple[ExoPlant, int]:
    """The plant the node's parameter values describe, and the task's length in samples."""
    preset = load_preset(values["preset"])
    settings = plant_settings(values)
    task = plan_task(preset, values["task_duration"], settings.dt,
                     np.random.default_rng(values["seed"]), settings.motion, values["rests"])
    extra = int(round(values["extra"] / settings.dt))
    plant = ExoPlant(preset, repeat_reference(task, values["repeats"], extra), settings,
                     values["seed"])
    return plant, len(task.theta)


class SimExo(Node):
    """The human–exoskeleton plant; see the module docstring for its interface."""

    def __init__(self, **kwargs) -> None:
        super().__init__("sim_exo", **kwargs)
        spec = (
            ("preset", "knee", "musculoskeletal preset of the wearer", {}),
            ("seed", 1, "random seed of task, noise, EMG and encoder", {"low": 0,
                                                                         "high": 2**31 - 1}),
            ("task_duration", 20.0, "s of planned motion in one repeat of the task",
             {"low": 1.0, "high": 3600.0}),
            ("repeats", 1, "times the task is done in a row", {"low": 1, "high": 100}),
            ("extra", 0.0, "s of the task's beginning done once more at the end",
             {"low": 0.0, "high": 3600.0}),
            ("motion", "mixed", "speed regime of the task", {"choices": sorted(REGIMES)}),
            ("rests", False, "the task has relaxed rests (the device then moves the relaxed "
             "limb); false: a bout of movements and holds, the person engaged throughout", {}),
            ("max_speed", 1.5, "cap on the task's peak speed, rad/s", {"low": 0.1,
                                                                       "high": 20.0}),
            ("cocontraction", 0.3, "largest co-contraction activation in holds",
             {"low": 0.0, "high": 1.0}),
            ("feedback_bandwidth", 0.7, "Hz, the person's tracking feedback",
             {"low": 0.1, "high": 10.0}),
            ("reaction_delay", 0.12, "s, the person's feedback delay", {"low": 0.0,
                                                                        "high": 1.0}),
            ("reflex_bandwidth", 1.5, "Hz, the person's short-latency (stretch reflex) "
             "feedback (0: none)", {"low": 0.0, "high": 10.0}),
            ("reflex_delay", 0.04, "s, the reflex's delay", {"low": 0.0, "high": 1.0}),
            ("adaptation_time", 2.0, "s, forgetting time of the person's model of the "
             "device's torque (0: no adaptation)", {"low": 0.0, "high": 600.0}),
            ("torque_limit", 15.0, "N·m, the actuator's peak torque", {"low": 0.01,
                                                                        "high": 1000.0}),
            ("actuator_bandwidth", 100.0, "Hz, the actuator's torque bandwidth",
             {"low": 0.1, "high": 10000.0}),
            ("actuator_delay", 0.005, "s, transport delay from command to torque",
             {"low": 0.0, "high": 1.0}),
            ("command_timeout", 0.25, "s without a command before the torque goes to zero",
             {"low": 0.001, "high": 10.0}),
            ("encoder_rate", 500.0, "Hz, joint_states rate", {"low": 1.0, "high": 10000.0}),
            ("encoder_resolution", 2 * np.pi / 2**14, "rad per encoder count",
             {"low": 0.0, "high": 1.0}),
            ("emg_sample_rate", 2000.0, "Hz", {"low": 200.0, "high": 20000.0}),
            ("chunk_size", 10, "EMG samples per EmgArray", {"low": 1, "high": 1000}),
            ("command_topic", "effort_controller/commands", "effort commands in", {}),
            ("frame_id", "emg", "header frame_id of emg/raw", {}),
            ("min_subscribers", 1, "emg/raw subscribers to wait for before streaming",
             {"low": 0, "high": 100}),
        )
        self.values = {name: declare(self, name, default, text, **extra)
                       for name, default, text, extra in spec}
        self.autostart = declare(self, "autostart", True, "standalone (ros2 run/launch): start "
                                 "streaming at once")
        depth, period, stale = declare_common(self)
        self.plant, self.task_samples = build_plant(self.values)
        self.joint = self.plant.preset.joint.name
        self.finished = threading.Event()  # the task ended
        self.stream_start_ns: int | None = None
        self.streaming = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.emg_pub = self.create_publisher(EmgArray, TOPIC_RAW, sensor_qos(depth))
        self.joint_pub = self.create_publisher(JointState, TOPIC_MEASURED, RELIABLE)
        self.create_subscription(Float64MultiArray, self.values["command_topic"],
                                 self._on_command, RELIABLE)
        self.health = Health(self, "simulated wearer and exoskeleton", period=period,
                             stale_after=stale, watch_input=lambda: self.streaming)
        self.get_logger().info(
            f"sim_exo: {self.values['preset']} wearer, {self.plant.duration:.1f} s of task, "
            f"commands on {self.values['command_topic']}")

    def start(self) -> None:
        """Start the simulation and streaming (in a thread of its own)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._stream, name="sim_exo", daemon=True)
        self._thread.start()

    def plant_time(self) -> float:
        """Plant time now, s since the first EMG sample (0 before streaming starts)."""
        if self.stream_start_ns is None:
            return 0.0
        return (time.time_ns() - self.stream_start_ns) * 1e-9

    def _on_command(self, msg: Float64MultiArray) -> None:
        self.health.input(self.values["command_topic"])
        if self.stream_start_ns is None:
            return
        if len(msg.data) != 1:
            self.health.note(f"command has {len(msg.data)} values for 1 joint; ignored")
            return
        with self._lock:
            self.plant.command(self.plant_time(), float(msg.data[0]))

    def _wait_for_subscribers(self) -> bool:
        while self.emg_pub.get_subscription_count() < self.values["min_subscribers"]:
            if self._stop.wait(0.01):
                return False
        return True

    def _stream(self) -> None:
        if not self._wait_for_subscribers():
            return
        period = self.values["chunk_size"] / self.values["emg_sample_rate"]
        template = EmgArray(sample_rate=float(self.values["emg_sample_rate"]),
                            channel_names=list(self.plant.preset.channel_names),
                            unit=EmgArray.UNIT_VOLT)
        template.header.frame_id = self.values["frame_id"]
        self.stream_start_ns = time.time_ns()
        self.streaming = True
        chunk = 0
        try:
            while not self._stop.is_set() and not self.plant.done:
                chunk += 1
                wait = chunk * period - self.plant_time()
                if wait > 0 and self._stop.wait(wait):
                    break
                with self._lock:
                    out = self.plant.advance(chunk * period)
                self._publish(template, out)
            if not self._stop.is_set():
                self.finished.set()
        except Exception as exc:  # noqa: BLE001 - a failing simulation must show
            self.health.fail(f"simulation failed: {exc!r}")
        finally:
            self.streaming = False

    def _publish(self, template: EmgArray, out) -> None:
        if out.emg.shape[0]:
            fs = template.sample_rate
            msg = EmgArray(sample_rate=fs, channel_names=template.channel_names,
                           unit=template.unit, num_samples=out.emg.shape[0],
                           first_sample_index=out.first_sample)
            msg.header.frame_id = template.header.frame_id
            msg.header.stamp = to_stamp(self.stream_start_ns + round(out.first_sample / fs * 1e9))
            msg.data = float32_array(out.emg)
            self.emg_pub.publish(msg)
            self.health.output(TOPIC_RAW)
        for t, angle, velocity in out.readings:
            msg = JointState(name=[self.joint], position=[angle], velocity=[velocity])
            msg.header.stamp = to_stamp(self.stream_start_ns + round(t * 1e9))
            self.joint_pub.publish(msg)
            self.health.output(TOPIC_MEASURED)

    def destroy_node(self) -> None:
        """Stop the simulation thread before the node goes."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        super().destroy_node()


def main(argv=None) -> int:
    """Run the plant alone (it starts streaming at once with ``autostart``)."""
    from emg_msk_ros.nodes.common import node_main

    def factory():
        node = SimExo()
        if node.autostart:
            node.start()
        return node

    return node_main(factory, argv)


if __name__ == "__main__":
    raise SystemExit(main())
