"""In-process delivery of the EMG topics (emg_msk_ros.nodes.local_links, Graph's
``intra_process``): the same estimates as over DDS, nothing lost to a recorder, the callbacks of
a linked node still one at a time, a subscriber's failure named."""

from __future__ import annotations

import os
import threading
import time

import pytest
from std_msgs.msg import String

from emg_msk_ros.io.bag_replay import read_topics
from emg_msk_ros.io.session_bag import write_recording
from emg_msk_ros.learning.inference import load_model
from emg_msk_ros.nodes import msk_estimator
from emg_msk_ros.nodes.common import resolve_model
from emg_msk_ros.nodes.local_links import LocalLinks, link
from emg_msk_ros.physics.preset import load_preset
from emg_msk_ros.physics.simulate import simulate_session
from emg_msk_ros.runner import Graph

MODEL = os.environ.get("EMG_MSK_MODEL", "knee")
EMG_TOPICS = ["/emg/raw", "/emg/envelope", "/msk/joint_states"]


def run_session(tmp_path, session, intra_process: bool, monkeypatch):
    """Replay ``session`` through driver → conditioner → estimator, recording the EMG topics;
    returns (recorded messages, counts, names of the threads the estimator ran on)."""
    threads = set()
    monkeypatch.undo()  # the previous run's wrapper
    original = msk_estimator.MskEstimator.on_envelope

    def on_envelope(self, msg):
        threads.add(threading.current_thread().name)
        original(self, msg)

    monkeypatch.setattr(msk_estimator.MskEstimator, "on_envelope", on_envelope)
    model = str(load_model(resolve_model(MODEL)).path)
    config = {"emg_driver": {"source": "bag", "bag_path": str(session), "rate": 4.0},
              "emg_conditioner": {"model": model}, "msk_estimator": {"model": model}}
    out = tmp_path / f"record_{intra_process}"
    with Graph(config, record=out, record_topics=EMG_TOPICS,
               intra_process=intra_process) as graph:
        linked = not any(sub.topic_name == "/emg/raw"
                         for sub in graph.nodes["emg_conditioner"].subscriptions)
        assert linked == intra_process
        graph.start()
        assert graph.run(duration=60) == "drained"
        counts = graph.counts()
    return read_topics(out, EMG_TOPICS), counts, threads


def test_in_process_delivery_gives_the_dds_estimates_on_the_drivers_thread(tmp_path,
                                                                           monkeypatch):
    session = write_recording(tmp_path / "session", simulate_session(
        load_preset("knee"), 2.0, seed=6, kin_rate=100.0), chunk_size=10)
    linked, linked_counts, linked_threads = run_session(tmp_path, session, True, monkeypatch)
    dds, dds_counts, dds_threads = run_session(tmp_path, session, False, monkeypatch)
    assert linked_threads == {"emg_driver_stream"}
    assert "emg_driver_stream" not in dds_threads
    for topics, counts in ((linked, linked_counts), (dds, dds_counts)):
        # the recorder still gets every message of the linked topics
        assert len(topics["/emg/raw"]) == counts["emg_driver"]["published"]["emg/raw"] > 0
        assert len(topics["/emg/envelope"]) == \
            counts["emg_conditioner"]["published"]["emg/envelope"] > 0
        assert counts["msk_estimator"]["received"]["emg/envelope"] == \
            counts["emg_conditioner"]["published"]["emg/envelope"]
    estimates = []
    for topics in (linked, dds):  # stamps from each run's stream start
        stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
                  for _, m in topics["/msk/joint_states"]]
        estimates.append([(stamp - stamps[0], m.position[0], m.effort[0])
                          for stamp, (_, m) in zip(stamps, topics["/msk/joint_states"])])
    assert len(estimates[0]) > 100
    assert estimates[0] == estimates[1]  # same process, same kernels: the same floats


class FakePublisher:
    def __init__(self, subscribers: int) -> None:
        self.subscribers, self.sent = subscribers, []

    def get_subscription_count(self) -> int:
        return self.subscribers

    def publish(self, msg) -> None:
        self.sent.append(msg)


def test_a_linked_message_goes_over_dds_only_while_something_else_subscribes():
    got = []
    links = LocalLinks()
    links.add("consumer", got.append, threading.Lock())
    alone, watched = FakePublisher(0), FakePublisher(1)
    links.publish(alone, "a")
    links.publish(watched, "b")
    assert got == ["a", "b"] and alone.sent == [] and watched.sent == ["b"]
    plain = FakePublisher(0)
    LocalLinks().publish(plain, "c")  # nothing linked: DDS as usual
    assert plain.sent == ["c"]


def test_a_failing_linked_subscriber_is_named():
    links = LocalLinks()
    links.add("emg_conditioner", lambda msg: 1 / 0, threading.Lock())
    with pytest.raises(RuntimeError, match="emg_conditioner failed on a linked message"):
        links.publish(FakePublisher(0), "x")


def test_a_linked_nodes_other_callbacks_wait_for_the_linked_one(rclpy_context):
    """While a linked delivery runs (publisher's thread), the node's timer and other
    subscriptions, called from another thread as the executor would, wait for it."""
    import rclpy

    node = rclpy.create_node("linked", context=rclpy_context)
    try:
        order = []
        inside, release = threading.Event(), threading.Event()

        def on_linked(msg):
            order.append("linked start")
            inside.set()
            release.wait(5)
            order.append("linked end")

        linked_sub = node.create_subscription(String, "in", on_linked, 10)
        other = node.create_subscription(String, "other", lambda m: order.append("other"), 10)
        timer = node.create_timer(1000.0, lambda: order.append("timer"))
        links = LocalLinks()
        link(links, node, linked_sub, on_linked)
        assert linked_sub not in list(node.subscriptions)
        producer = threading.Thread(target=links.publish, args=(FakePublisher(0), String()))
        producer.start()
        assert inside.wait(5)
        callers = [threading.Thread(target=timer.callback),
                   threading.Thread(target=other.callback, args=(String(),))]
        for caller in callers:
            caller.start()
        time.sleep(0.2)
        assert order == ["linked start"]  # both still wait for the node's lock
        release.set()
        for thread in [producer, *callers]:
            thread.join(5)
        assert order[:2] == ["linked start", "linked end"]
        assert sorted(order[2:]) == ["other", "timer"]
    finally:
        node.destroy_node()

