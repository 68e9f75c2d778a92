"""assist_controller: the assistive torque for the exoskeleton, behind the safety layer.

Subscribes ``msk/joint_states`` (sensor_msgs/JointState: estimated angle rad, velocity rad/s,
effort = net muscle moment N·m), ``msk/muscle_states`` (MuscleState; read only by the
myoelectric law), the exoskeleton's measured ``joint_states`` and ``assist/estop``
(std_msgs/Bool, reliable: engaged on ``true``, latched until ``assist/reset_fault``).
Publishes, on every accepted estimate and otherwise at ``control_rate`` (the tick restarts
with each estimate), the command on ``command_topic`` (std_msgs/Float64MultiArray in
``joints`` order, N·m, for a ros2_control ForwardCommandController with
``interface_name: effort``), ``assist/state`` (AssistState), ``assist/wrench`` (one
WrenchStamped per joint, torque about z of ``wrench_frames``) and ``/diagnostics``.
Services: ``assist/enable`` (std_srvs/SetBool), ``assist/reset_fault`` (std_srvs/Trigger).

The node starts disabled. Zero torque is published when it is disabled, on e-stop (from the
e-stop callback itself), when the node is destroyed or the context shuts down, and after any
exception in the control loop (which also latches a fault). Every limit is a parameter with a
range; a change that is out of range, inconsistent or relaxes a limit in any state but disabled
is refused with the reason. The watchdog, the ramps and the control tick use the steady clock, not ROS
time, so neither a system-time step nor a stopped ``/clock`` (``use_sim_time``) can freeze the
torque. The safety logic itself lives in :mod:`emg_msk_ros.control` (no ROS).
"""

from __future__ import annotations

import signal
import sys

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import WrenchStamped
from rcl_interfaces.msg import (FloatingPointRange, ParameterDescriptor, ParameterType,
                                SetParametersResult)
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.experimental import EventsExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from emg_msk_ros.control.controller import AssistController, StepOutput
from emg_msk_ros.control.laws import (ESTIMATE, LAW_NAMES, LAW_SPEC_BY_NAME, LAW_SPECS,
                                      MEASURED, MUSCLES, make_law)
from emg_msk_ros.control.limits import LIMIT_SPECS, LimitError, ParamSpec, SafetyLimits
from emg_msk_ros.control.safety import State
from emg_msk_ros.msg import AssistState, MuscleState
from emg_msk_ros.nodes.common import TOPIC_DIAGNOSTICS, TOPIC_JOINT, TOPIC_MUSCLES, stamp_ns

RELIABLE = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)
# Parameters that rebuild the assist law when they change.
LAW_PARAMETERS = {spec.name for spec in LAW_SPECS} | {"assist_law", "flexor_muscles",
                                                       "extensor_muscles"}
DIAGNOSTIC_LEVEL = {State.DISABLED: DiagnosticStatus.OK, State.ENABLED: DiagnosticStatus.OK,
                    State.FAULTED: DiagnosticStatus.ERROR, State.ESTOP: DiagnosticStatus.ERROR}


def _descriptor(spec: ParamSpec, read_only: bool = False) -> ParameterDescriptor:
    text = f"{spec.description} ({spec.unit or 'unitless'}, {spec.low:g}..{spec.high:g})"
    if spec.per_joint:
        return ParameterDescriptor(
            type=ParameterType.PARAMETER_DOUBLE_ARRAY, read_only=read_only,
            description=text + "; one value per joint, or one for all",
            additional_constraints=f"each value in [{spec.low:g}, {spec.high:g}] {spec.unit}")
    return ParameterDescriptor(
        type=ParameterType.PARAMETER_DOUBLE, description=text, read_only=read_only,
        floating_point_range=[FloatingPointRange(from_value=spec.low, to_value=spec.high)])


def _by_name(names, wanted, arrays: dict) -> tuple[dict[str, np.ndarray] | None, str]:
    """Pick ``wanted`` entries out of name-indexed message arrays; (None, reason) if a name is
    missing or an array's length does not match ``names``."""
    index = {name: i for i, name in enumerate(names)}
    missing = [w for w in wanted if w not in index]
    if missing:
        return None, f"names lack {', '.join(missing)}"
    picked = {}
    for field, values in arrays.items():
        if len(values) != len(names):
            return None, f"{field} has {len(values)} values for {len(names)} names"
        values = np.asarray(values, dtype=float)
        picked[field] = values[[index[w] for w in wanted]]
    return picked, ""


class AssistControllerNode(Node):
    """Assist law + safety layer on a timer; see the module docstring for its interface."""

    def __init__(self, **kwargs):
        super().__init__("assist_controller", **kwargs)
        # Set first: a parameter refused below leaves a half-built node, which the context's
        # shutdown still destroys.
        self._destroyed = False
        self.command_pub = None
        # Watchdog, ramps and the control timer run on a steady clock: ROS time can step back
        # (system time) or stop (/clock under use_sim_time), and the torque path must not.
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        fixed = ParameterDescriptor(read_only=True)
        self.joints = list(self.declare_parameter(
            "joints", ["knee_angle_r"],
            ParameterDescriptor(read_only=True, description="joints, in command order")).value)
        self.declare_parameter("command_topic", "effort_controller/commands", fixed)
        self.declare_parameter("wrench_frames", [""], ParameterDescriptor(
            read_only=True, description="frame of each joint's WrenchStamped (empty: joint name)"))
        self.declare_parameter("require_measured_state", False, ParameterDescriptor(
            read_only=True, description="refuse to enable without the exoskeleton's joint_states"))
        self.declare_parameter("assist_law", "moment_fraction", ParameterDescriptor(
            description="assist law", additional_constraints="one of " + ", ".join(LAW_NAMES)))
        for name in ("flexor_muscles", "extensor_muscles"):
            self.declare_parameter(name, [""], ParameterDescriptor(
                description=f"myoelectric law: {name.split('_')[0]}s, 'muscle' or 'joint:muscle'"))
        for spec in LIMIT_SPECS + LAW_SPECS:
            default = [spec.default] if spec.per_joint else spec.default
            self.declare_parameter(spec.name, default,
                                   _descriptor(spec, read_only=spec.name == "control_rate"))
        try:
            limits = SafetyLimits.from_values(self._values(LIMIT_SPECS), len(self.joints))
            law, muscles, smoothing = self._law(self._values(LAW_SPECS))
        except LimitError as exc:
            raise ValueError(f"assist_controller parameters: {exc}") from exc
        self.controller = AssistController(
            self.joints, law, limits, muscles, smoothing,
            self.get_parameter("require_measured_state").value)
        frames = [f for f in self.get_parameter("wrench_frames").value if f]
        self.wrench_frames = frames if len(frames) == len(self.joints) else list(self.joints)
        self._note = ""  # why the last enable request was refused
        self._rejected: dict[str, str] = {}  # input -> why its last message was ignored
        self._estimate_stamp = None
        self._reported_state: State | None = None
        self._last_diagnostics = -1.0

        command_topic = self.get_parameter("command_topic").value
        self.command_pub = self.create_publisher(Float64MultiArray, command_topic, RELIABLE)
        self.state_pub = self.create_publisher(AssistState, "assist/state", RELIABLE)
        self.wrench_pub = self.create_publisher(WrenchStamped, "assist/wrench", RELIABLE)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, TOPIC_DIAGNOSTICS,
                                                      RELIABLE)
        # Best effort subscriptions match both reliable and best-effort publishers.
        self.create_subscription(JointState, TOPIC_JOINT, self._on_estimate,
                                 qos_profile_sensor_data)
        self.create_subscription(MuscleState, TOPIC_MUSCLES, self._on_muscles,
                                 qos_profile_sensor_data)
        self.create_subscription(JointState, "joint_states", self._on_measured,
                                 qos_profile_sensor_data)
        self.create_subscription(Bool, "assist/estop", self._on_estop, RELIABLE)
        self.create_service(SetBool, "assist/enable", self._on_enable)
        self.create_service(Trigger, "assist/reset_fault", self._on_reset)
        self.add_on_set_parameters_callback(self._on_parameters)
        self.timer = self.create_timer(1.0 / limits.control_rate, self._control_step,
                                       clock=self._steady)
        self.get_logger().info(
            f"assist_controller: joints {self.joints}, law {self.get_parameter('assist_law').value}"
            f", {limits.control_rate:g} Hz, commands on {self.command_pub.topic_name}; disabled")

    # -- parameters ------------------------------------------------------------------------

    def _values(self, specs, overrides: dict | None = None) -> dict:
        overrides = overrides or {}
        return {s.name: overrides.get(s.name, self.get_parameter(s.name).value) for s in specs}

    def _law(self, values: dict, overrides: dict | None = None):
        """(law, muscle names, smoothing time constant s) from parameters plus ``overrides``."""
        def get(name):
            return (overrides or {}).get(name, self.get_parameter(name).value)
        flexors = [m for m in get("flexor_muscles") if m]
        extensors = [m for m in get("extensor_muscles") if m]
        law, muscles = make_law(get("assist_law"), values, self.joints, flexors, extensors)
        smoothing = float(values["smoothing_time_constant"])
        LAW_SPEC_BY_NAME["smoothing_time_constant"].check(np.array([smoothing]))
        return law, muscles, smoothing

    def _on_parameters(self, params) -> SetParametersResult:
        changed = {p.name: p.value for p in params}
        try:
            limits = None
            if changed.keys() & {s.name for s in LIMIT_SPECS}:
                limits = SafetyLimits.from_values(self._values(LIMIT_SPECS, changed),
                                                  len(self.joints))
            law = None
            if changed.keys() & LAW_PARAMETERS:
                law = self._law(self._values(LAW_SPECS, changed), changed)
        except (LimitError, TypeError, ValueError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        refusal = None
        if limits is not None:
            refusal = self.controller.safety.limits_refusal(limits)
        if law is not None and refusal is None:
            refusal = self.controller.law_refusal(law[0], law[1])
        if refusal:
            return SetParametersResult(successful=False, reason=refusal)
        if limits is not None:
            self.controller.set_limits(limits)
        if law is not None:
            self.controller.set_law(*law)
        return SetParametersResult(successful=True)

    # -- inputs ----------------------------------------------------------------------------

    def _now(self) -> float:
        """The controller's clock, s (steady: never jumps, never stops)."""
        return self._steady.now().nanoseconds * 1e-9

    def _note_rejection(self, name: str, reason: str | None) -> None:
        if reason is None:
            self._rejected.pop(name, None)
            return
        self._rejected[name] = reason
        self.get_logger().warning(f"{name}: {reason}", throttle_duration_sec=1.0)

    def _on_estimate(self, msg: JointState) -> None:
        if self._destroyed:  # a late event (see _control_step)
            return
        picked, why = _by_name(msg.name, self.joints, {
            "position": msg.position, "velocity": msg.velocity, "effort": msg.effort})
        if picked is None:
            reason = f"ignored: {why}"
        else:
            reason = self.controller.update_estimate(
                self._now(), stamp_ns(msg.header.stamp) * 1e-9, picked["position"],
                picked["velocity"], picked["effort"])
            if reason is None:
                self._estimate_stamp = msg.header.stamp
                # Command the new estimate now, not at the next tick, and count the control
                # period from here (the tick stays the watchdog when estimates stop).
                self._control_step()
                if not self.timer.is_canceled():
                    self.timer.reset()
        self._note_rejection(ESTIMATE, reason)

    def _on_muscles(self, msg: MuscleState) -> None:
        if not self.controller.muscle_names:
            return  # the law does not read muscles
        picked, why = _by_name(msg.names, self.controller.muscle_names,
                               {"activation": msg.activation})
        reason = f"ignored: {why}" if picked is None else self.controller.update_muscles(
            self._now(), stamp_ns(msg.header.stamp) * 1e-9, picked["activation"])
        self._note_rejection(MUSCLES, reason)

    def _on_measured(self, msg: JointState) -> None:
        picked, why = _by_name(msg.name, self.joints,
                               {"position": msg.position, "velocity": msg.velocity})
        reason = f"ignored: {why}" if picked is None else self.controller.update_measured(
            self._now(), stamp_ns(msg.header.stamp) * 1e-9, picked["position"], picked["velocity"])
        self._note_rejection(MEASURED, reason)

    def _on_estop(self, msg: Bool) -> None:
        self.controller.set_estop(bool(msg.data), self._now())
        if msg.data:
            self.get_logger().error("e-stop engaged: torque zeroed, latched until reset_fault")
        self._control_step()  # publish the zero now, not on the next tick

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response):
        if request.data:
            response.success, response.message = self.controller.request_enable(self._now())
            self._note = "" if response.success else response.message
        else:
            response.success, response.message = self.controller.disable(self._now())
        self.get_logger().info(f"assist/enable {request.data}: {response.message}")
        self._control_step()
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response):
        response.success, response.message = self.controller.reset_fault(self._now())
        self.get_logger().info(f"assist/reset_fault: {response.message}")
        self._control_step()
        return response

    # -- output ----------------------------------------------------------------------------

    def _control_step(self) -> None:
        # After destroy_node (zero torque published) the executor may still hand over an event
        # queued before: the node publishes nothing more.
        if self._destroyed:
            return
        try:
            out = self.controller.step(self._now())
            self.command_pub.publish(Float64MultiArray(data=out.command.tolist()))
            self._publish_state(out)
        except Exception as exc:  # noqa: BLE001 - any failure must leave the motor at zero
            self._publish_zero()
            self.controller.fault(f"exception in the control loop: {exc!r}", immediate=True)
            self.get_logger().error(f"control loop failed, torque zeroed: {exc!r}")

    def _publish_zero(self) -> None:
        """Zero torque on the command topic, whatever the controller's state (none before the
        topic exists: nothing was commanded yet)."""
        if self.command_pub is None:
            return
        try:
            self.command_pub.publish(Float64MultiArray(data=[0.0] * len(self.joints)))
        except Exception as exc:  # noqa: BLE001 - during shutdown the publisher may be gone
            print(f"assist_controller: could not publish zero torque: {exc!r}", file=sys.stderr)

    def _publish_state(self, out: StepOutput) -> None:
        s = out.safety
        msg = AssistState(
            joint_names=self.joints, human_torque=out.human_torque.tolist(),
            desired_torque=out.desired_torque.tolist(), command_torque=s.command.tolist(),
            state=int(s.state), enabled=s.state is State.ENABLED,
            fault=s.state in (State.FAULTED, State.ESTOP),
            fault_reason=s.fault_reason or self._note,
            saturated=s.saturated.tolist(), rate_limited=s.rate_limited.tolist(),
            range_limited=s.range_limited.tolist(), velocity_limited=s.velocity_limited.tolist(),
            stale_input=bool(s.stale_inputs))
        if self._estimate_stamp is not None:
            msg.header.stamp = self._estimate_stamp
        self.state_pub.publish(msg)
        for frame, torque in zip(self.wrench_frames, s.command):
            wrench = WrenchStamped()
            wrench.header.stamp = msg.header.stamp
            wrench.header.frame_id = frame
            wrench.wrench.torque.z = float(torque)
            self.wrench_pub.publish(wrench)
        now = self._now()
        if s.state != self._reported_state or now - self._last_diagnostics >= 1.0:
            self._publish_diagnostics(out, now)

    def _publish_diagnostics(self, out: StepOutput, now: float) -> None:
        s = out.safety
        safety = self.controller.safety
        status = DiagnosticStatus(
            level=DIAGNOSTIC_LEVEL[s.state], name="assist_controller: safety",
            message=s.state.name.lower() + (f": {s.fault_reason}" if s.fault_reason else ""),
            hardware_id=",".join(self.joints))
        values = {"state": s.state.name, "fault_reason": s.fault_reason,
                  "enable_refused": self._note, "stale_inputs": ",".join(s.stale_inputs),
                  "command_torque": str(s.command.tolist())}
        for name in sorted(safety.required | safety.optional):
            values[f"age {name} (s)"] = f"{safety.age(name):.4f}"
        for name, reason in sorted(self._rejected.items()):
            values[f"ignored {name}"] = reason
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)
        self._reported_state = s.state
        self._last_diagnostics = now

    def destroy_node(self) -> None:
        """Publish zero torque, then destroy the node (once; the context's shutdown destroys
        the nodes it tracks, and ``main`` does too)."""
        if not self._destroyed:
            self._destroyed = True
            self._publish_zero()
            super().destroy_node()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(args: list[str] | None = None) -> None:
    """Run the node alone on the events executor (about 3x less latency than the default
    single-threaded executor on these machines, see benchmarks/controller.py).

    SIGINT and SIGTERM are handled here rather than by rclpy, whose handler invalidates the
    context before the node could publish its final zero torque.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        node = AssistControllerNode()
    except (ValueError, ParameterException) as exc:  # a refused parameter: say which
        print(f"error: {exc}", flush=True)
        rclpy.try_shutdown()
        raise SystemExit(1) from None
    executor = EventsExecutor()
    executor.add_node(node)
    try:
        # spin_once in a loop, so that Python sees the signal between callbacks.
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
