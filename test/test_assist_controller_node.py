"""The assist_controller node over DDS: watchdog, e-stop, enable, parameters, zero on exit.

A probe node plays the estimator (publishing msk/joint_states at 200 Hz while ``streaming``)
and records the command, assist/state and /diagnostics. Waits are bounded only so that a broken
node fails instead of hanging; no assertion is about speed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from emg_msk_ros.msg import AssistState
from emg_msk_ros.nodes.assist_controller import AssistControllerNode

RELIABLE = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE)
HUMAN_TORQUE = 8.0  # N·m in the estimate; moment_gain 0.5 -> 4 N·m desired
# The nodes' watchdog here: the probe's 200 Hz estimates share this process with the test and
# the garbage collector, and the CI machine's 2 cores with other work, so a 50 ms gap between
# two of them (the shipped watchdog_timeout) is no fault of the node's; the trip and its timing
# are tested without DDS in test_control_safety.py.
WATCHDOG_S = 0.5


class Probe(Node):
    def __init__(self, context):
        super().__init__("assist_probe", context=context)
        self.streaming = False
        self.estimate = self.create_publisher(JointState, "msk/joint_states", RELIABLE)
        self.estop = self.create_publisher(Bool, "assist/estop", RELIABLE)
        self.commands: list[list[float]] = []
        self.states: list[AssistState] = []
        self.diagnostics: list[DiagnosticStatus] = []
        self.create_subscription(Float64MultiArray, "effort_controller/commands",
                                 lambda m: self.commands.append(list(m.data)), RELIABLE)
        self.create_subscription(AssistState, "assist/state", self.states.append, RELIABLE)
        self.create_subscription(DiagnosticArray, "/diagnostics",
                                 lambda m: self.diagnostics.extend(m.status), RELIABLE)
        self.enable = self.create_client(SetBool, "assist/enable")
        self.reset = self.create_client(Trigger, "assist/reset_fault")
        self.create_timer(0.005, self._publish_estimate)

    def _publish_estimate(self):
        if self.streaming:
            msg = JointState(name=["knee"], position=[0.8], velocity=[0.0],
                             effort=[HUMAN_TORQUE])
            msg.header.stamp = self.get_clock().now().to_msg()
            self.estimate.publish(msg)


def spin_until(executor, predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        executor.spin_once(timeout_sec=0.01)


def call(executor, client, request):
    spin_until(executor, lambda: client.service_is_ready(), what=f"{client.srv_name}")
    future = client.call_async(request)
    spin_until(executor, future.done, what=f"{client.srv_name} reply")
    return future.result()


@pytest.fixture
def rig(executor, rclpy_context):
    controller = AssistControllerNode(context=rclpy_context, parameter_overrides=[
        Parameter("joints", value=["knee"]), Parameter("moment_gain", value=[0.5]),
        Parameter("max_torque_rate", value=[40.0]), Parameter("fault_ramp_time", value=0.3),
        Parameter("smoothing_time_constant", value=0.0),
        Parameter("watchdog_timeout", value=WATCHDOG_S),
    ])
    probe = Probe(rclpy_context)
    executor.add_node(controller)
    executor.add_node(probe)
    spin_until(executor, lambda: probe.states, what="the first assist/state")
    return executor, controller, probe


def enable_and_reach_assist(executor, probe):
    probe.streaming = True
    spin_until(executor, lambda: probe.states and not probe.states[-1].stale_input,
               what="fresh inputs")
    reply = call(executor, probe.enable, SetBool.Request(data=True))
    assert reply.success, reply.message
    spin_until(executor, lambda: probe.commands and probe.commands[-1] == [4.0],
               what="the full assist torque")


def test_enable_refused_while_stale_then_watchdog_ramps_to_zero_and_reports(rig):
    executor, controller, probe = rig
    reply = call(executor, probe.enable, SetBool.Request(data=True))
    assert not reply.success and "no msk/joint_states received yet" in reply.message
    spin_until(executor, lambda: "no msk/joint_states" in probe.states[-1].fault_reason,
               what="the refusal on assist/state")
    assert probe.states[-1].state == AssistState.STATE_DISABLED and probe.commands[-1] == [0.0]

    enable_and_reach_assist(executor, probe)
    assert probe.states[-1].enabled and list(probe.states[-1].human_torque) == [HUMAN_TORQUE]

    # Limits can be tightened but not relaxed while enabled; out-of-range values are refused.
    relaxed = controller.set_parameters([Parameter("max_torque", value=[12.0])])[0]
    assert not relaxed.successful and "cannot relax limits while enabled" in relaxed.reason
    wrong = controller.set_parameters([Parameter("range_margin", value=[2.0])])[0]
    assert not wrong.successful and "outside the allowed range" in wrong.reason
    assert controller.set_parameters([Parameter("max_velocity", value=[2.0])])[0].successful

    probe.streaming = False  # the estimator stops mid-stream
    first = len(probe.commands)
    spin_until(executor, lambda: probe.states[-1].state == AssistState.STATE_FAULTED,
               what="the watchdog fault")
    spin_until(executor, lambda: probe.commands[-1] == [0.0], what="the ramp to zero")
    state = probe.states[-1]
    assert state.fault and not state.enabled and "watchdog: msk/joint_states" in state.fault_reason
    assert state.stale_input
    ramp = [c[0] for c in probe.commands[first:]]
    assert all(b <= a for a, b in zip(ramp, ramp[1:])), "the ramp must only go down"
    assert len([c for c in ramp if 0.0 < c < 4.0]) >= 3, "it ramps, it does not jump to zero"
    spin_until(executor, lambda: any(s.level == DiagnosticStatus.ERROR and "watchdog" in s.message
                                     for s in probe.diagnostics), what="the fault on /diagnostics")

    # Latched: fresh inputs do not re-enable; reset_fault then enable does.
    probe.streaming = True
    spin_until(executor, lambda: not probe.states[-1].stale_input, what="fresh inputs")
    reply = call(executor, probe.enable, SetBool.Request(data=True))
    assert not reply.success and "fault latched" in reply.message
    assert call(executor, probe.reset, Trigger.Request()).success
    assert call(executor, probe.enable, SetBool.Request(data=True)).success


def test_estop_zeroes_within_one_control_period_and_latches(rig):
    executor, controller, probe = rig
    enable_and_reach_assist(executor, probe)
    # Stop the control loop (its tick, and the estimates that each trigger a step): the zero
    # must come from the e-stop callback itself, so it goes out on receipt (DDS transit + one
    # callback), not on a later step.
    controller.timer.cancel()
    probe.streaming = False
    for _ in range(30):
        executor.spin_once(timeout_sec=0.002)
    first, states = len(probe.commands), len(probe.states)
    assert probe.commands[-1] == [4.0]
    probe.estop.publish(Bool(data=True))
    spin_until(executor, lambda: len(probe.commands) > first, what="the e-stop's command")
    assert probe.commands[first:] == [[0.0]]
    spin_until(executor, lambda: len(probe.states) > states, what="the e-stop's state")
    assert probe.states[-1].state == AssistState.STATE_ESTOP and probe.states[-1].fault
    assert list(probe.states[-1].command_torque) == [0.0]

    controller.timer.reset()
    probe.streaming = True
    spin_until(executor, lambda: len(probe.commands) > first + 10, what="more commands")
    probe.estop.publish(Bool(data=False))
    spin_until(executor, lambda: len(probe.commands) > first + 20, what="more commands")
    assert all(c == [0.0] for c in probe.commands[first:])
    assert probe.states[-1].state == AssistState.STATE_ESTOP, "releasing must not unlatch"
    assert not call(executor, probe.enable, SetBool.Request(data=True)).success
    assert call(executor, probe.reset, Trigger.Request()).success
    assert call(executor, probe.enable, SetBool.Request(data=True)).success


def test_disable_and_destroy_publish_zero(rig):
    executor, controller, probe = rig
    enable_and_reach_assist(executor, probe)
    assert call(executor, probe.enable, SetBool.Request(data=False)).success
    spin_until(executor, lambda: probe.commands[-1] == [0.0], what="zero after disable")
    assert call(executor, probe.enable, SetBool.Request(data=True)).success
    spin_until(executor, lambda: probe.commands[-1] == [4.0], what="the assist torque again")
    executor.remove_node(controller)
    controller.destroy_node()
    spin_until(executor, lambda: probe.commands[-1] == [0.0], what="zero on destroy")


def test_callbacks_after_destroy_publish_nothing_and_raise_nothing(rig):
    """An executor may deliver an event queued before the node was destroyed (seen at the end
    of `emg-msk run`): the zero torque stays the last command."""
    executor, controller, probe = rig
    enable_and_reach_assist(executor, probe)
    executor.remove_node(controller)
    controller.destroy_node()
    spin_until(executor, lambda: probe.commands[-1] == [0.0], what="zero on destroy")
    sent = len(probe.commands)
    estimate = JointState(name=["knee"], position=[0.5], velocity=[0.0], effort=[8.0])
    estimate.header.stamp = controller.get_clock().now().to_msg()
    controller._on_estimate(estimate)
    controller._on_estop(Bool(data=False))
    controller._control_step()
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.01)
    assert len(probe.commands) == sent and probe.commands[-1] == [0.0]


def test_exception_in_the_loop_publishes_zero_and_latches_a_fault(rig):
    executor, controller, probe = rig
    enable_and_reach_assist(executor, probe)

    def broken(now):
        raise RuntimeError("simulated failure")

    controller.controller.step = broken
    spin_until(executor, lambda: probe.commands[-1] == [0.0], what="zero after the exception")
    assert controller.controller.safety.state.name == "FAULTED"
    assert "simulated failure" in controller.controller.safety.fault_reason


def test_the_default_config_file_is_accepted_by_the_node(rclpy_context):
    import yaml

    from emg_msk_ros.paths import config_path

    params = yaml.safe_load(config_path("assist_controller.yaml").read_text())
    params = params["assist_controller"]["ros__parameters"]
    node = AssistControllerNode(context=rclpy_context, parameter_overrides=[
        Parameter(name, value=value) for name, value in params.items()])
    try:
        for name, value in params.items():
            got = node.get_parameter(name).value
            assert (list(got) if isinstance(value, list) else got) == value, name
        assert node.controller.muscle_names == ()  # moment_fraction reads no muscles
    finally:
        node.destroy_node()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_node_process_publishes_zero_when_interrupted(executor, rclpy_context, tmp_path,
                                                          sig):
    """``main()``: a SIGINT or SIGTERM while assisting ends with a zero command, then a clean
    exit."""
    probe = Probe(rclpy_context)
    executor.add_node(probe)
    process = subprocess.Popen(  # cwd outside the checkout: import the installed package
        [sys.executable, "-m", "emg_msk_ros.nodes.assist_controller", "--ros-args",
         "-p", "joints:=[knee]", "-p", "moment_gain:=[0.5]",
         "-p", f"watchdog_timeout:={WATCHDOG_S}"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        spin_until(executor, lambda: probe.commands, timeout=30.0, what="the node to start")
        enable_and_reach_assist(executor, probe)
        process.send_signal(sig)
        assert process.wait(timeout=10.0) == 0, process.stderr.read()
        spin_until(executor, lambda: probe.commands[-1] == [0.0], what="the final zero")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_each_accepted_estimate_is_commanded_at_once(rig):
    """With the tick stopped, the estimates alone keep the commands coming: each one is
    commanded on receipt, not at the next tick."""
    executor, controller, probe = rig
    enable_and_reach_assist(executor, probe)
    controller.timer.cancel()
    first = len(probe.commands)
    spin_until(executor, lambda: len(probe.commands) > first + 5,
               what="commands driven by the estimates alone")
    assert probe.commands[-1] == [4.0]


def test_a_refused_parameter_is_named_and_the_half_built_node_shuts_down(rclpy_context,
                                                                        tmp_path):
    with pytest.raises(ValueError, match=r"max_torque\[0\] = 1000"):
        AssistControllerNode(context=rclpy_context, parameter_overrides=[
            Parameter("max_torque", value=[1000.0])])
    rclpy_context.shutdown()  # destroys the half-built node it tracks: no error
    for value, says in (("max_torque:=[1000.0]", "max_torque[0] = 1000"),  # our range check
                        ("fault_ramp_time:=5.0", "fault_ramp_time")):  # the descriptor's
        process = subprocess.run(  # the node alone says what is wrong, without a traceback
            [sys.executable, "-m", "emg_msk_ros.nodes.assist_controller", "--ros-args",
             "-p", value], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert process.returncode == 1
        assert process.stdout.startswith("error: ") and says in process.stdout, process.stdout
        assert "Traceback" not in process.stderr, process.stderr


def test_ros_time_that_stands_still_does_not_stop_the_tick_or_the_watchdog(executor,
                                                                           rclpy_context):
    """Under use_sim_time with no /clock, ROS time stays at 0: the tick, the watchdog and the
    fault ramp run on the steady clock all the same."""
    controller = AssistControllerNode(context=rclpy_context, parameter_overrides=[
        Parameter("use_sim_time", value=True), Parameter("joints", value=["knee"]),
        Parameter("moment_gain", value=[0.5]), Parameter("max_torque_rate", value=[40.0]),
        Parameter("smoothing_time_constant", value=0.0),
        Parameter("watchdog_timeout", value=WATCHDOG_S)])
    probe = Probe(rclpy_context)
    executor.add_node(controller)
    executor.add_node(probe)
    assert controller.get_clock().now().nanoseconds == 0
    spin_until(executor, lambda: len(probe.states) > 10, what="assist/state from the tick")
    enable_and_reach_assist(executor, probe)
    probe.streaming = False
    spin_until(executor, lambda: probe.states[-1].state == AssistState.STATE_FAULTED,
               what="the watchdog fault")
    spin_until(executor, lambda: probe.commands[-1] == [0.0], what="the ramp to zero")
