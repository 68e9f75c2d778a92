"""``emg-msk smoke``: publish one message of each custom type over rclpy and receive it back.

A quick check that the ROS 2 install, the generated interfaces and DDS on this machine work.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def sample_messages() -> dict:
    """One filled-in message per custom type, keyed by topic."""
    from emg_msk_ros.msg import AssistState, EmgArray, MuscleState

    emg = EmgArray(sample_rate=2000.0, channel_names=["RF", "VM", "BF", "ST"], num_samples=10,
                   first_sample_index=40, unit=EmgArray.UNIT_VOLT)
    emg.data = np.linspace(-1e-3, 1e-3, 40, dtype=np.float32)
    muscles = MuscleState(names=["rectus_femoris", "biceps_femoris"],
                          joint_names=["knee_angle_r"], activation=[0.2, 0.05],
                          force=[310.0, 42.5], moment=[-12.4, 1.3])
    assist = AssistState(joint_names=["knee_angle_r"], human_torque=[-11.1],
                         desired_torque=[-3.3], command_torque=[-2.0],
                         state=AssistState.STATE_ENABLED, enabled=True, fault=False,
                         saturated=[False], rate_limited=[True], range_limited=[False],
                         velocity_limited=[False], stale_input=False)
    return {"smoke/emg": emg, "smoke/muscles": muscles, "smoke/assist": assist}


def round_trip(messages: dict, timeout: float = 5.0) -> dict:
    """Publish each message on its topic and return what a subscriber received, by topic."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

    # Reliable and transient-local, so a message published before discovery completes still
    # reaches the late-joining subscription.
    qos = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                     durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    context = rclpy.context.Context()
    rclpy.init(context=context)
    received: dict = {}
    try:
        talker = rclpy.create_node("emg_msk_smoke_talker", context=context)
        listener = rclpy.create_node("emg_msk_smoke_listener", context=context)
        for topic, msg in messages.items():
            talker.create_publisher(type(msg), topic, qos).publish(msg)
            listener.create_subscription(
                type(msg), topic, lambda m, t=topic: received.setdefault(t, m), qos)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(talker)
        executor.add_node(listener)
        deadline = time.monotonic() + timeout
        while len(received) < len(messages) and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        executor.shutdown()
        talker.destroy_node()
        listener.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    return received


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=5.0, help="s to wait for all messages")


def run(args: argparse.Namespace) -> int:
    sent = sample_messages()
    received = round_trip(sent, args.timeout)
    ok = True
    for topic, msg in sent.items():
        got = received.get(topic)
        same = got == msg
        ok &= same
        print(f"{topic:15s} {type(msg).__name__:12s} {'received intact' if same else 'MISSING or CHANGED'}")
        if got is not None:
            print(f"    {got}")
    print("smoke: all messages made the round trip" if ok else "smoke: FAILED")
    return 0 if ok else 1
