"""Record rclpy topics to a rosbag2 folder (MCAP) with the publishers' offered QoS.

Subscriptions take messages serialized (``raw=True``): the CDR bytes go to the bag unchanged,
with the receive time (ns, the node's clock) as the log time. Message definitions come from the
package's type store (:mod:`emg_msk_ros.io.typestore`), so the bag reads back with ``rosbags``
and ``ros2 bag`` alike.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import HistoryPolicy, LivelinessPolicy, QoSProfile
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import StoragePlugin, Writer

from emg_msk_ros.io.typestore import typestore

# rosbag2 writes an unset deadline/lifespan/lease as this "infinite" time.
INFINITE = QosTime(sec=0x7FFFFFFF, nsec=0xFFFFFFFF)
# Topics every node has that say nothing about the pipeline.
INFRASTRUCTURE_TOPICS = ("/rosout", "/parameter_events")
# Reader-side queue for recording: deep enough to ride out a slow disk write.
RECORD_DEPTH = 200


class BagError(ValueError):
    """A bag or topic that cannot be recorded or replayed; the message names the topic/type."""


@dataclass(frozen=True)
class TopicSpec:
    """A topic to record: its message class and the QoS its publisher offers."""

    msg_class: type
    qos: QoSProfile


def type_name(msg_class: type) -> str:
    """The ROS 2 type name of a generated message class, e.g. ``std_msgs/msg/String``."""
    package = msg_class.__module__.split(".")[0]
    return f"{package}/msg/{msg_class.__name__}"


def _duration(duration) -> QosTime:
    ns = duration.nanoseconds
    return INFINITE if ns == 0 else QosTime(sec=ns // 1_000_000_000, nsec=ns % 1_000_000_000)


def to_bag_qos(profile: QoSProfile) -> Qos:
    """The rosbags form of an rclpy QoS profile (same enum values; unset durations infinite)."""
    return Qos(
        history=QosHistory(int(profile.history)),
        depth=int(profile.depth),
        reliability=QosReliability(int(profile.reliability)),
        durability=QosDurability(int(profile.durability)),
        deadline=_duration(profile.deadline),
        lifespan=_duration(profile.lifespan),
        liveliness=QosLiveliness(int(profile.liveliness)),
        liveliness_lease_duration=_duration(profile.liveliness_lease_duration),
        avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions),
    )


def published_topics(nodes: Iterable[Node]) -> dict[str, TopicSpec]:
    """Every topic the nodes publish (but ``/rosout`` and ``/parameter_events``), by name."""
    topics: dict[str, TopicSpec] = {}
    for node in nodes:
        for publisher in node.publishers:
            if publisher.topic_name not in INFRASTRUCTURE_TOPICS:
                topics.setdefault(publisher.topic_name,
                                  TopicSpec(publisher.msg_type, publisher.qos_profile))
    return topics


def select_topics(available: Mapping[str, TopicSpec], wanted: Iterable[str] | None
                  ) -> dict[str, TopicSpec]:
    """The ``wanted`` topics (all when None); a topic that is not available is a BagError."""
    if wanted is None:
        return dict(available)
    chosen = {}
    for topic in wanted:
        name = topic if topic.startswith("/") else f"/{topic}"
        if name not in available:
            raise BagError(f"cannot record topic {name}: no node of the graph publishes it "
                           f"(published: {', '.join(sorted(available))})")
        chosen[name] = available[name]
    return chosen


class BagRecorder:
    """Subscribes to ``topics`` on ``node`` and writes every message to a new bag at ``path``."""

    def __init__(self, node: Node, path: str | Path, topics: Mapping[str, TopicSpec]) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists; choose a new bag folder")
        if not topics:
            raise BagError("nothing to record: no topics given")
        store = typestore()
        self._node = node
        self._lock = threading.Lock()
        self.counts = {topic: 0 for topic in topics}
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._subscriptions = []
        try:
            for topic, spec in topics.items():
                msgtype = type_name(spec.msg_class)
                if msgtype not in store.types:
                    raise BagError(f"cannot record topic {topic}: message type {msgtype} is "
                                   "unknown to the bag type store")
                connection = self._writer.add_connection(
                    topic, msgtype, typestore=store, offered_qos_profiles=[to_bag_qos(spec.qos)])
                reader_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST,
                                        depth=max(RECORD_DEPTH, spec.qos.depth),
                                        reliability=spec.qos.reliability,
                                        durability=spec.qos.durability,
                                        liveliness=LivelinessPolicy.AUTOMATIC)
                self._subscriptions.append(node.create_subscription(
                    spec.msg_class, topic,
                    lambda data, c=connection, t=topic: self._write(c, t, data),
                    reader_qos, raw=True))
        except Exception:
            self.close()
            raise

    def _write(self, connection, topic: str, data: bytes) -> None:
        with self._lock:
            if self._writer is None:
                return
            self._writer.write(connection, self._node.get_clock().now().nanoseconds, data)
            self.counts[topic] += 1

    def subscriptions_matched(self) -> bool:
        """True when every recorded topic has at least one publisher connected."""
        return all(sub.get_publisher_count() > 0 for sub in self._subscriptions)

    def close(self) -> None:
        """Stop recording and finish the bag (idempotent)."""
        for sub in self._subscriptions:
            self._node.destroy_subscription(sub)
        self._subscriptions = []
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
