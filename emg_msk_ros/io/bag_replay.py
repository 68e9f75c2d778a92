"""Read a rosbag2 folder with ``rosbags``, and replay it over rclpy with its original timing.

:class:`BagPlayer` publishes each message at ``start + (log time − origin) / rate``, where the
origin is the bag's first log time plus ``start_offset``; with ``loop`` it starts over after
the last message. With ``restamp`` every ``header.stamp`` is shifted by the same offset as the
log times (not scaled by the rate, so stamps stay consistent with the data's own timing), which
makes a replayed session look live to nodes that compare stamps with the clock.
Publishers offer the QoS recorded in the bag.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    LivelinessPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.interfaces import Qos
from rosbags.rosbag2 import Reader

from emg_msk_ros.io.bag_record import INFINITE, BagError
from emg_msk_ros.io.session_bag import UNREADABLE_BAG
from emg_msk_ros.io.typestore import typestore


def _open_reader(path: Path) -> Reader:
    if not (path / "metadata.yaml").is_file():
        raise BagError(f"{path} is not a rosbag2 folder (no metadata.yaml)")
    reader = Reader(path)
    try:
        reader.open()
    except UNREADABLE_BAG as exc:
        raise BagError(f"{path}: cannot read the bag: {exc}") from exc
    return reader


def _connections(reader: Reader, path: Path, topics: Iterable[str] | None) -> list:
    by_topic = {conn.topic: conn for conn in reader.connections}
    if topics is None:
        return list(by_topic.values())
    missing = [t for t in topics if t not in by_topic]
    if missing:
        raise BagError(f"{path}: topic(s) {', '.join(missing)} missing from the bag (it has "
                       f"{', '.join(sorted(by_topic))})")
    return [by_topic[t] for t in topics]


def read_topics(path: str | Path, topics: Iterable[str]) -> dict[str, list[tuple[int, object]]]:
    """(log time ns, message) per topic, in log order, deserialized with the package type store.

    A missing topic or a message type the type store does not know is a :class:`BagError`
    naming it.
    """
    path = Path(path)
    store = typestore()
    reader = _open_reader(path)
    try:
        conns = _connections(reader, path, list(topics))
        for conn in conns:
            if conn.msgtype not in store.types:
                raise BagError(f"{path}: topic {conn.topic} has message type {conn.msgtype}, "
                               "unknown to the type store")
        out: dict[str, list[tuple[int, object]]] = {conn.topic: [] for conn in conns}
        try:
            for conn, log_ns, raw in reader.messages(connections=conns):
                out[conn.topic].append((log_ns, store.deserialize_cdr(raw, conn.msgtype)))
        except UNREADABLE_BAG as exc:
            raise BagError(f"{path}: cannot read the bag: {exc}") from exc
        return out
    finally:
        reader.close()


def message_class(msgtype: str) -> type:
    """The rclpy message class of a type name like ``sensor_msgs/msg/JointState``."""
    package, kind, name = (msgtype.split("/") + ["", ""])[:3]
    try:
        module = importlib.import_module(f"{package}.{kind}")
        return getattr(module, name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise BagError(f"message type {msgtype} is unknown here (no Python module "
                       f"{package}.{kind} with {name})") from exc


def _duration(t) -> Duration:
    if (t.sec, t.nsec) == tuple(INFINITE) or (t.sec, t.nsec) == (0, 0):
        return Duration()
    return Duration(seconds=t.sec, nanoseconds=t.nsec)


def from_bag_qos(qos: Qos) -> QoSProfile:
    """The rclpy profile of an offered QoS recorded in a bag."""
    return QoSProfile(
        history=HistoryPolicy(qos.history.value),
        depth=max(1, int(qos.depth)),
        reliability=ReliabilityPolicy(qos.reliability.value),
        durability=DurabilityPolicy(qos.durability.value),
        deadline=_duration(qos.deadline),
        lifespan=_duration(qos.lifespan),
        liveliness=LivelinessPolicy(qos.liveliness.value),
        liveliness_lease_duration=_duration(qos.liveliness_lease_duration),
    )


class BagPlayer:
    """Publishes the chosen topics of a bag on ``node`` with the bag's timing.

    ``start(start_ns)`` begins playback in a thread (``start_ns`` is the wall time, ns, at which
    the origin is published; default: now); ``done`` is set when playback ends.
    """

    def __init__(self, node: Node, path: str | Path, topics: Iterable[str] | None = None, *,
                 rate: float = 1.0, start_offset: float = 0.0, loop: bool = False,
                 restamp: bool = True, clock_ns=time.time_ns) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if start_offset < 0:
            raise ValueError(f"start_offset must be >= 0 s, got {start_offset}")
        self.path = Path(path)
        self.rate = float(rate)
        self.loop = bool(loop)
        self.restamp = bool(restamp)
        self.counts: dict[str, int] = {}
        self.done = threading.Event()
        self._clock_ns = clock_ns
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._node = node
        self._reader = _open_reader(self.path)
        try:
            self._conns = _connections(self._reader, self.path,
                                       None if topics is None else list(topics))
            self._publishers = {}
            for conn in self._conns:
                cls = message_class(conn.msgtype)
                offered = conn.ext.offered_qos_profiles
                qos = from_bag_qos(offered[0]) if offered else QoSProfile(depth=10)
                self._publishers[conn.id] = (node.create_publisher(cls, conn.topic, qos), cls,
                                             hasattr(cls, "header") and self.restamp)
                self.counts[conn.topic] = 0
            self._origin = self._reader.start_time + round(start_offset * 1e9)
            if self._origin > self._reader.end_time:
                length = (self._reader.end_time - self._reader.start_time) / 1e9
                raise BagError(f"{self.path}: start_offset {start_offset} s is past the bag's "
                               f"end ({length:.3f} s)")
        except Exception:
            self._reader.close()
            raise

    @property
    def publishers(self) -> list:
        """The publishers playback uses (one per topic)."""
        return [pub for pub, _, _ in self._publishers.values()]

    def start(self, start_ns: int | None = None) -> None:
        """Begin playback in a background thread (see :meth:`play`)."""
        start_ns = self._clock_ns() if start_ns is None else int(start_ns)
        self._thread = threading.Thread(target=self.play, args=(start_ns, self._stop),
                                        name=f"bag_player:{self.path.name}", daemon=True)
        self._thread.start()

    def play(self, start_ns: int, stop: threading.Event) -> None:
        """Publish every message at ``start_ns + (log time − origin) / rate`` (wall clock, ns),
        waiting on ``stop`` between messages; returns at the end (without ``loop``) or when
        ``stop`` is set. Sets ``done`` on return."""
        try:
            played_ns = 0  # bag time of the passes already played (loop)
            while not stop.is_set():
                times = []
                for conn, log_ns, raw in self._reader.messages(connections=self._conns,
                                                               start=self._origin):
                    elapsed = log_ns - self._origin + played_ns
                    wait_s = (start_ns + round(elapsed / self.rate) - self._clock_ns()) * 1e-9
                    if wait_s > 0 and stop.wait(wait_s) or stop.is_set():
                        return
                    self._publish(conn, raw, start_ns - self._origin + played_ns)
                    times.append(log_ns)
                if not self.loop or not times:
                    return
                # the next pass starts one mean message interval after this pass's last one
                interval = (times[-1] - times[0]) // max(len(times) - 1, 1) or 1_000_000
                played_ns += times[-1] - self._origin + interval
        finally:
            self.done.set()

    def _publish(self, conn, raw: bytes, shift: int) -> None:
        publisher, cls, restamp = self._publishers[conn.id]
        if restamp:
            msg = deserialize_message(raw, cls)
            ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec + shift
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 1_000_000_000)
            raw = serialize_message(msg)
        publisher.publish(raw)
        self.counts[conn.topic] += 1

    def stop(self) -> None:
        """Stop playback, wait for the thread, close the bag (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._reader.close()
        self.done.set()

