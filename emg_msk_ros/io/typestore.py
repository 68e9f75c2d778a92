"""A rosbags type store that knows ROS 2 Kilted's messages and this package's own ``msg/``."""

from __future__ import annotations

from functools import lru_cache

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from emg_msk_ros.paths import share_dir

PACKAGE_MSGS = ("EmgArray", "MuscleState", "AssistState")


@lru_cache(maxsize=1)
def typestore():
    """Return the shared type store (Kilted plus ``emg_msk_ros/msg/*``), built once."""
    store = get_typestore(Stores.ROS2_KILTED)
    msg_dir = share_dir() / "msg"
    types = {}
    for name in PACKAGE_MSGS:
        path = msg_dir / f"{name}.msg"
        if not path.is_file():
            raise FileNotFoundError(f"message definition {path} is missing")
        types.update(get_types_from_msg(path.read_text(), f"emg_msk_ros/msg/{name}"))
    store.register(types)
    return store


def stamp_to_ns(stamp) -> int:
    """builtin_interfaces/Time (rosbags or rclpy) to integer ns."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int):
    """Integer ns to a rosbags builtin_interfaces/Time."""
    time_cls = typestore().types["builtin_interfaces/msg/Time"]
    return time_cls(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))
