"""Assist controller speed: one control step (µs) and e-stop → zero command through DDS (ms).

``emg-msk bench controller [--json] [--quick] [--steps N] [--trials N]``.

1. Step cost, one thread, enabled with a fresh estimate every step, for each assist law:
   the bare law call (baseline), ``AssistController.step`` (law + smoothing + safety layer),
   and ``update_estimate`` + ``step`` (what one estimate and one tick cost the node).
2. E-stop latency: the ``assist_controller`` node and a probe node in one process, for the
   ``SingleThreadedExecutor`` and ``rclpy.experimental.EventsExecutor``. The probe keeps the
   controller assisting, publishes ``assist/estop`` and times (``time.perf_counter``) until the
   zero command arrives on the command topic: two DDS hops and the callbacks between. Baseline,
   measured in the same run and executor: a Bool bounced off a relay node (the same two hops
   with no work).

DDS stays on loopback (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) in a domain of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from emg_msk_ros.benchmarking import add_quick, parse_with_quick
from emg_msk_ros.control.controller import AssistController
from emg_msk_ros.control.laws import LAW_NAMES, LawInputs, make_law
from emg_msk_ros.control.limits import SafetyLimits

JOINTS = ["knee_angle_r"]
FLEXORS = ["biceps_femoris", "semitendinosus"]
EXTENSORS = ["rectus_femoris", "vastus_medialis"]


def _percentiles(samples_s: list[float] | np.ndarray, scale: float) -> dict:
    x = np.asarray(samples_s) * scale
    return {"p50": float(np.median(x)), "p99": float(np.percentile(x, 99)),
            "max": float(x.max()), "n": int(x.size)}


def step_costs(steps: int) -> dict:
    """Per-call times (µs) of the law alone, the controller step, and update + step."""
    clock = time.perf_counter
    out = {}
    for name in LAW_NAMES:
        limits = SafetyLimits.from_values({}, len(JOINTS))
        law, muscles = make_law(name, {}, JOINTS, FLEXORS, EXTENSORS)
        controller = AssistController(JOINTS, law, limits, muscles, 0.02)
        rng = np.random.default_rng(0)
        angle, torque = rng.uniform(0.2, 1.5, steps), rng.uniform(-20, 20, steps)
        activation = rng.uniform(0, 1, (steps, len(muscles)))
        period = 1.0 / limits.control_rate
        law_t, step_t, both_t = (np.empty(steps) for _ in range(3))
        for k in range(steps):
            now = (k + 1) * period
            t0 = clock()
            controller.update_estimate(now, now, angle[k:k + 1], [0.1], torque[k:k + 1])
            t1 = clock()
            controller.update_muscles(now, now, activation[k])
            controller.update_measured(now, now, angle[k:k + 1] - 0.01, [0.0])
            t2 = clock()
            controller.step(now)
            t3 = clock()
            law(LawInputs(angle[k:k + 1], np.array([0.1]), torque[k:k + 1], activation[k],
                          angle[k:k + 1] - 0.01, np.array([0.0])))
            t4 = clock()
            law_t[k], step_t[k], both_t[k] = t4 - t3, t3 - t2, (t1 - t0) + (t3 - t2)
            if k == 10:
                ok, reason = controller.request_enable(now)
                assert ok, reason
        out[name] = {"law": _percentiles(law_t[100:], 1e6), "step": _percentiles(step_t[100:], 1e6),
                     "update+step": _percentiles(both_t[100:], 1e6)}
    return out


def estop_latency(trials: int, executor_name: str) -> dict:
    """E-stop → zero command and the Bool echo baseline (ms), in one process."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.logging import LoggingSeverity
    from rclpy.experimental import EventsExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool, Float64MultiArray
    from std_srvs.srv import SetBool, Trigger

    from emg_msk_ros.nodes.assist_controller import AssistControllerNode

    reliable = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)
    context = rclpy.context.Context()
    rclpy.init(context=context)
    executor = (EventsExecutor if executor_name == "events" else SingleThreadedExecutor)(
        context=context)
    received: dict[str, list] = {"command": [], "pong": []}
    try:
        controller = AssistControllerNode(context=context, parameter_overrides=[
            Parameter("joints", value=JOINTS), Parameter("moment_gain", value=[0.5]),
            Parameter("max_torque_rate", value=[1000.0]),
            Parameter("smoothing_time_constant", value=0.0)])
        controller.get_logger().set_level(LoggingSeverity.FATAL)  # one e-stop per trial
        probe = Node("bench_probe", context=context)
        relay = Node("bench_relay", context=context)
        estimate = probe.create_publisher(JointState, "msk/joint_states", reliable)
        estop = probe.create_publisher(Bool, "assist/estop", reliable)
        ping = probe.create_publisher(Bool, "bench/ping", reliable)
        pong = relay.create_publisher(Bool, "bench/pong", reliable)
        relay.create_subscription(Bool, "bench/ping", pong.publish, reliable)
        command_topic = controller.command_pub.topic_name
        probe.create_subscription(
            Float64MultiArray, command_topic,
            lambda m: received["command"].append((time.perf_counter(), m.data[0])), reliable)
        probe.create_subscription(
            Bool, "bench/pong", lambda m: received["pong"].append(time.perf_counter()), reliable)
        enable = probe.create_client(SetBool, "assist/enable")
        reset = probe.create_client(Trigger, "assist/reset_fault")

        def feed():
            msg = JointState(name=JOINTS, position=[0.8], velocity=[0.0], effort=[8.0])
            msg.header.stamp = probe.get_clock().now().to_msg()
            estimate.publish(msg)

        probe.create_timer(0.005, feed)
        for node in (controller, probe, relay):
            executor.add_node(node)

        def spin_until(predicate, timeout=5.0):
            deadline = time.monotonic() + timeout
            while not predicate():
                if time.monotonic() > deadline:
                    raise TimeoutError("benchmark: no reply from the controller")
                executor.spin_once(timeout_sec=0.01)

        def call(client, request):
            spin_until(client.service_is_ready)
            future = client.call_async(request)
            spin_until(future.done)
            return future.result()

        spin_until(lambda: received["command"])
        estop_ms, echo_ms = [], []
        for _ in range(trials):
            spin_until(lambda: call(enable, SetBool.Request(data=True)).success)
            spin_until(lambda: received["command"][-1][1] == 4.0)
            t0 = time.perf_counter()
            estop.publish(Bool(data=True))
            spin_until(lambda: received["command"][-1][1] == 0.0)
            zero_at = next(t for t, v in received["command"] if t >= t0 and v == 0.0)
            estop_ms.append(zero_at - t0)
            estop.publish(Bool(data=False))
            spin_until(lambda: call(reset, Trigger.Request()).message.startswith("cleared"))
            count = len(received["pong"])
            t0 = time.perf_counter()
            ping.publish(Bool(data=True))
            spin_until(lambda: len(received["pong"]) > count)
            echo_ms.append(received["pong"][count] - t0)
        return {"estop_to_zero_ms": _percentiles(estop_ms, 1e3),
                "echo_baseline_ms": _percentiles(echo_ms, 1e3)}
    finally:
        executor.shutdown()
        rclpy.try_shutdown(context=context)


def _table(result: dict) -> str:
    lines = [f"assist controller ({result['machine']})", "",
             f"one control step, µs ({result['steps']} steps, one thread)",
             "| law | bare law (baseline) p50 / p99 | step p50 / p99 | update+step p50 / p99 |",
             "|---|---|---|---|"]
    for law, row in result["step_us"].items():
        cells = [f"{row[k]['p50']:.1f} / {row[k]['p99']:.1f}" for k in ("law", "step",
                                                                         "update+step")]
        lines.append(f"| {law} | " + " | ".join(cells) + " |")
    lines += ["", f"e-stop → zero command through DDS, ms ({result['trials']} trials, "
              "one process)",
              "| executor | path | p50 | p99 | max |", "|---|---|---|---|---|"]
    for executor, row in result["estop"].items():
        for key, label in (("echo_baseline_ms", "Bool echo via a relay (baseline)"),
                           ("estop_to_zero_ms", "e-stop → zero command")):
            r = row[key]
            lines.append(f"| {executor} | {label} | {r['p50']:.2f} | {r['p99']:.2f} | "
                         f"{r['max']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="emg-msk bench controller", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    parser.add_argument("--steps", type=int, default=20000, help="control steps per law")
    parser.add_argument("--trials", type=int, default=100, help="e-stops per executor")
    add_quick(parser, "500 steps per law, 5 e-stops per executor")
    args = parse_with_quick(parser, argv, steps=500, trials=5)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    result = {"machine": f"{platform.processor() or platform.machine()}, "
                         f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
              "steps": args.steps, "trials": args.trials, "step_us": step_costs(args.steps),
              "estop": {name: estop_latency(args.trials, name)
                        for name in ("single_threaded", "events")}}
    print(json.dumps(result, indent=2) if args.json else _table(result))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
