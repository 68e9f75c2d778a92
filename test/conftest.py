"""Shared fixtures. Every test process keeps DDS on loopback with a domain of its own."""

from __future__ import annotations

import os

# Before anything can import rclpy: discovery stays on this machine, and this run gets its own
# ROS_DOMAIN_ID (0..101 are valid everywhere) so parallel runs and other sessions never mix.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def test_data() -> Path:
    """The folder of small real-data files copied into the repo (see each SOURCE.md)."""
    return TEST_DATA


@pytest.fixture
def rclpy_context():
    """A fresh rclpy context, initialised for this test and always shut down."""
    import rclpy

    context = rclpy.context.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        if context.ok():
            rclpy.shutdown(context=context)


@pytest.fixture
def executor(rclpy_context):
    """A single-threaded executor on the test's context; its nodes are destroyed afterwards."""
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor(context=rclpy_context)
    try:
        yield executor
    finally:
        for node in list(executor.get_nodes()):
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()
