"""Intra-process delivery between nodes of one process (``emg-msk run``'s EMG topics).

Over DDS, every hop inside the graph serialises the message, wakes the executor's thread and
deserialises it again: the estimate waited for two such hops after each chunk (driver →
conditioner → estimator). A linked topic skips them for one subscriber in the same process:
the publishing thread calls the subscriber's callback itself, so with the driver's streaming
thread publishing, a chunk is conditioned and estimated on that thread as soon as it arrives.
The message still goes out over DDS whenever anything else subscribes (a recorder, rviz, an
observer, another process), and the subscriber's own DDS subscription to the topic is removed,
so nothing is received twice.

A linked subscriber's callbacks would otherwise run on two threads at once (the linked one on
the publisher's, its timers and other subscriptions on the executor's). :func:`link` gives the
node a lock that every one of its callbacks takes, so they still run one at a time, as under a
single-threaded executor.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any


class LocalLinks:
    """The in-process subscribers of a node's topic, called on the publishing thread."""

    def __init__(self) -> None:
        self._targets: list[tuple[str, Callable[[Any], None], threading.Lock]] = []

    def __len__(self) -> int:
        return len(self._targets)

    def add(self, name: str, callback: Callable[[Any], None], lock: threading.Lock) -> None:
        """Call ``callback`` (under ``lock``) with every message published; ``name`` names the
        subscriber in errors."""
        self._targets.append((name, callback, lock))

    def publish(self, publisher, msg) -> None:
        """Publish ``msg`` over DDS (unless every subscriber is linked), then hand it to each
        linked subscriber. A subscriber's exception is raised as a RuntimeError naming it."""
        if not self._targets or publisher.get_subscription_count():
            publisher.publish(msg)
        for name, callback, lock in self._targets:
            with lock:
                try:
                    callback(msg)
                except Exception as exc:
                    raise RuntimeError(f"{name} failed on a linked message: {exc}") from exc


def _locked(callback: Callable[..., Any], lock: threading.Lock) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(*args: Any) -> Any:
        with lock:
            return callback(*args)

    return run


def link(links: LocalLinks, node, subscription, callback: Callable[[Any], None]) -> None:
    """Deliver the messages published through ``links`` to ``node``'s ``callback`` directly,
    in place of its DDS ``subscription`` (destroyed here).

    The node's lock (made on its first link) is taken by that delivery and, from now on, by
    each of the node's timer and subscription callbacks.
    """
    lock = getattr(node, "callback_lock", None)
    if lock is None:
        lock = node.callback_lock = threading.Lock()
        for entity in list(node.timers) + list(node.subscriptions):
            if entity is not subscription:
                entity.callback = _locked(entity.callback, lock)
    node.destroy_subscription(subscription)
    links.add(node.get_name(), callback, lock)
