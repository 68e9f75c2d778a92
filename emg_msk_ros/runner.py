"""``emg-msk run``: the node graph in one process, from the YAML the launch files use.

    emg-msk run [--config FILE] [--bag SESSION] [--record OUT] [--duration S]
                [--no-intra-process]

The config is a ROS 2 parameters file (``<node_name>: ros__parameters: {...}``); each section
names a node of the graph (``emg_driver`` or ``sim_exo``, the simulated wearer and exoskeleton,
``emg_conditioner``, ``msk_estimator``, ``assist_controller``) and its parameters, passed to the node as ``parameter_overrides`` exactly
as ``ros2 launch`` would pass the file. All nodes share one rclpy context and executor
(``rclpy.experimental.EventsExecutor`` by default). Streaming starts once every topic between
the nodes (and the recorder) is connected, so nothing is lost to discovery.

The EMG topics between the nodes are delivered in process (:mod:`emg_msk_ros.nodes.local_links`;
``--no-intra-process`` turns it off): the driver's streaming thread runs the conditioner on each
chunk and the estimator on each excitation sample itself, so an estimate leaves as soon as its
chunk arrives instead of after two DDS hops through the executor. ``emg/raw`` and
``emg/envelope`` still go out over DDS whenever anything else subscribes (the recorder, rviz,
another process). The estimator's joint states, and everything the controller reads, go
through the executor as before, and so does ``sim_exo``'s EMG (like its encoder readings).

The run ends after ``--duration`` s, when a replayed session has gone through the whole graph,
or on Ctrl-C. Shutdown is ordered: the assist controller publishes zero torque first, then the
driver stops, the recorder finishes its bag, and the nodes are destroyed.

All nodes also share one Python interpreter: each time a chunk arrives, the driver's streaming
thread must get the GIL from the thread running the callbacks. A thread waiting for the GIL
forces a switch only after the switch interval (CPython's default: 5 ms); until then the
callbacks' thread may keep taking it back, so a chunk could wait up to 5 ms. While a graph
exists, the interval is ``GIL_SWITCH_S`` (0.5 ms). Under ``ros2 launch`` each node has a
process (and GIL) of its own.

The library interface is :class:`Graph` (used by ``emg-msk demo``, the tests and benchmarks).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from emg_msk_ros.paths import config_path

# Node name -> (module, class), in start-up order (upstream first).
NODE_CLASSES: dict[str, tuple[str, str]] = {
    "sim_exo": ("emg_msk_ros.nodes.sim_exo", "SimExo"),
    "emg_driver": ("emg_msk_ros.nodes.emg_driver", "EmgDriver"),
    "emg_conditioner": ("emg_msk_ros.nodes.emg_conditioner", "EmgConditioner"),
    "msk_estimator": ("emg_msk_ros.nodes.msk_estimator", "MskEstimator"),
    "assist_controller": ("emg_msk_ros.nodes.assist_controller", "AssistControllerNode"),
}
EXECUTORS = ("events", "single", "multi")
GIL_SWITCH_S = 0.0005  # s, CPython's switch interval while a graph exists (see above)
RECORDER_NODE = "emg_msk_recorder"
PLAYER_NODE = "emg_msk_player"
DIAGNOSTICS = "/diagnostics"


class GraphError(RuntimeError):
    """The graph cannot be built or started; the message names the node, file or topic."""


def load_config(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Node name → parameters from a ROS 2 parameters file (default ``config/pipeline.yaml``)."""
    path = Path(path) if path is not None else config_path("pipeline.yaml")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GraphError(f"cannot read config {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise GraphError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(document, dict) or not document:
        raise GraphError(f"{path}: expected '<node_name>: ros__parameters: {{...}}' sections")
    config = {}
    for name, section in document.items():
        if name not in NODE_CLASSES:
            raise GraphError(f"{path}: unknown node {name!r}; the graph has "
                             f"{', '.join(NODE_CLASSES)}")
        if not isinstance(section, dict) or set(section) != {"ros__parameters"} \
                or not isinstance(section["ros__parameters"], dict):
            raise GraphError(f"{path}: section {name} must hold exactly one mapping "
                             "'ros__parameters'")
        config[name] = dict(section["ros__parameters"])
    return config


def _parameters(values: Mapping[str, Any]):
    from rclpy.parameter import Parameter

    return [Parameter(name, value=value) for name, value in values.items()]


def _make_executor(kind: str, context):
    if kind == "events":
        from rclpy.experimental import EventsExecutor

        # It enables faulthandler on sys.stderr, which needs a real file (not so under pytest's
        # capsys or in notebooks): give it the process's own stderr.
        with contextlib.redirect_stderr(sys.__stderr__):
            return EventsExecutor(context=context)
    if kind == "single":
        from rclpy.executors import SingleThreadedExecutor

        return SingleThreadedExecutor(context=context)
    if kind == "multi":
        from rclpy.executors import MultiThreadedExecutor

        return MultiThreadedExecutor(num_threads=2, context=context)
    raise GraphError(f"executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")


def _topic(name: str) -> str:
    return name if name.startswith("/") else f"/{name}"


class Graph:
    """The nodes named in ``config`` in one rclpy context, one executor, optional recorder.

    ``config`` maps node names to parameter dicts (see :func:`load_config`). ``record`` is a new
    bag folder for every topic the graph publishes (or ``record_topics``). ``replay_topics``
    republishes those topics of the driver's session bag (source ``bag``) on the driver's
    clock, e.g. ``/joint_states`` as the exoskeleton's measurement. ``observers`` maps a
    namespace ``NS`` to the parameters of one more ``msk_estimator`` that only watches: it reads
    the graph's ``emg/envelope`` (a state-aided model: its ``joint_state_topic``, best given
    absolute, e.g. ``/joint_states``) and publishes under ``NS`` (``NS/msk/joint_states``, ...),
    which no node of the graph reads; e.g. a second model scored beside the one in the loop.
    ``intra_process`` links emg_driver → emg_conditioner → msk_estimator in process (see the
    module docstring).
    """

    def __init__(self, config: Mapping[str, Mapping[str, Any]], *, executor: str = "events",
                 record: str | Path | None = None, record_topics: Sequence[str] | None = None,
                 replay_topics: Sequence[str] = (),
                 observers: Mapping[str, Mapping[str, Any]] | None = None,
                 intra_process: bool = True) -> None:
        import rclpy
        from rclpy.signals import SignalHandlerOptions

        unknown = [name for name in config if name not in NODE_CLASSES]
        if unknown:
            raise GraphError(f"unknown node(s) {', '.join(unknown)}; the graph has "
                             f"{', '.join(NODE_CLASSES)}")
        if {"emg_driver", "sim_exo"} <= set(config):
            raise GraphError("emg_driver and sim_exo both publish emg/raw; configure one")
        self.context = rclpy.context.Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.nodes: dict[str, Any] = {}
        self.recorder = None
        self.player = None
        self._extra_nodes = []
        self._closed = False
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_S)
        try:
            for name, (module, cls) in NODE_CLASSES.items():
                if name in config:
                    self.nodes[name] = self._create(name, module, cls, config[name])
            from emg_msk_ros.nodes.common import TOPIC_ENVELOPE

            for namespace, values in (observers or {}).items():
                self.nodes[f"{namespace}/msk_estimator"] = self._create(
                    f"{namespace}/msk_estimator", *NODE_CLASSES["msk_estimator"], values,
                    namespace=namespace,
                    cli_args=["--ros-args", "-r", f"{TOPIC_ENVELOPE}:=/{TOPIC_ENVELOPE}"])
            if intra_process:
                self._link_emg()
            self.executor = _make_executor(executor, self.context)
            for node in self.nodes.values():
                self.executor.add_node(node)
            self._configure_driver()
            if replay_topics:
                self._make_player(config.get("emg_driver", {}), replay_topics)
            if record is not None:
                self._make_recorder(record, record_topics)
        except BaseException:
            self.close()
            raise

    def _create(self, name: str, module: str, cls: str, values: Mapping[str, Any],
                **options):
        try:
            node_class = getattr(importlib.import_module(module), cls)
            node = node_class(context=self.context, parameter_overrides=_parameters(values),
                              **options)
        except Exception as exc:
            raise GraphError(f"node {name}: {exc}") from exc
        unknown = sorted(set(values) - set(node.list_parameters([], 0).names))
        if unknown:  # rclpy would silently ignore them
            node.destroy_node()
            raise GraphError(f"node {name} has no parameter(s) {', '.join(unknown)}")
        return node

    def _link_emg(self) -> None:
        """emg_driver → emg_conditioner → msk_estimator in process (see the module docstring)."""
        from emg_msk_ros.nodes.local_links import link

        conditioner = self.nodes.get("emg_conditioner")
        estimator = self.nodes.get("msk_estimator")
        if conditioner is not None and self.driver is not None:
            link(self.driver.links, conditioner, conditioner.subscription, conditioner.on_raw)
        if estimator is not None and conditioner is not None:
            link(conditioner.links, estimator, estimator.subscription, estimator.on_envelope)

    @property
    def driver(self):
        """The ``emg_driver`` node, or None."""
        return self.nodes.get("emg_driver")

    @property
    def source(self):
        """The node the EMG comes from (``emg_driver`` or ``sim_exo``), or None."""
        return self.driver or self.nodes.get("sim_exo")

    def _configure_driver(self) -> None:
        from rclpy.lifecycle import TransitionCallbackReturn

        if self.driver is not None and \
                self.driver.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise GraphError(f"node emg_driver: {self.driver.health.error}")

    def helper_node(self, name: str):
        """A plain node in the graph's context and executor (service clients, publishers),
        destroyed with the graph."""
        return self._extra_node(name)

    def _extra_node(self, name: str):
        import rclpy

        node = rclpy.create_node(name, context=self.context)
        self._extra_nodes.append(node)
        self.executor.add_node(node)
        return node

    def _make_player(self, driver_values: Mapping[str, Any], topics: Sequence[str]) -> None:
        from emg_msk_ros.io.bag_replay import BagPlayer

        if self.driver is None or driver_values.get("source") != "bag":
            raise GraphError("replaying topics needs the emg_driver with source 'bag'")
        self.player = BagPlayer(self._extra_node(PLAYER_NODE), driver_values["bag_path"],
                                [_topic(t) for t in topics], rate=self.driver.rate,
                                start_offset=self.driver.start_offset, loop=self.driver.loop)

    def _make_recorder(self, path: str | Path, topics: Sequence[str] | None) -> None:
        from emg_msk_ros.io.bag_record import BagRecorder, published_topics, select_topics

        available = published_topics(list(self.nodes.values()) + self._extra_nodes)
        self.recorder = BagRecorder(self._extra_node(RECORDER_NODE), path,
                                    select_topics(available, topics))

    def _unconnected(self) -> list[str]:
        """Topics between graph nodes whose publishers and subscriptions have not all matched
        (each side discovers the other on its own; both must, or first messages are lost)."""
        nodes = list(self.nodes.values()) + self._extra_nodes
        subscriptions = [sub for node in nodes for sub in node.subscriptions]
        publishers = [pub for node in nodes for pub in node.publishers
                      if pub.topic_name != DIAGNOSTICS]
        readers = collections.Counter(sub.topic_name for sub in subscriptions)
        writers = collections.Counter(pub.topic_name for pub in publishers)
        waiting = {pub.topic_name for pub in publishers
                   if pub.get_subscription_count() < readers[pub.topic_name]}
        waiting |= {sub.topic_name for sub in subscriptions
                    if sub.get_publisher_count() < writers[sub.topic_name]}
        return sorted(waiting)

    def spin_for(self, seconds: float) -> None:
        """Run callbacks for ``seconds`` s."""
        from rclpy.task import Future

        end = time.monotonic() + seconds
        never = Future()
        while (left := end - time.monotonic()) > 0:
            self.executor.spin_until_future_complete(never, timeout_sec=min(left, 0.1))

    def start(self, timeout: float = 10.0) -> None:
        """Wait until every link of the graph is connected, then activate the driver."""
        deadline = time.monotonic() + timeout
        while waiting := self._unconnected():
            if time.monotonic() > deadline:
                raise GraphError(f"topics not connected after {timeout:g} s: "
                                 f"{', '.join(waiting)}")
            self.spin_for(0.02)
        if self.driver is not None:
            self.driver.trigger_activate()
            if self.player is not None:
                while self.driver.stream_start_ns is None:
                    if time.monotonic() > deadline or self.driver.health.error:
                        raise GraphError("emg_driver did not start streaming: "
                                         f"{self.driver.health.error or 'timeout'}")
                    time.sleep(0.001)
                self.player.start(self.driver.stream_start_ns)
        elif "sim_exo" in self.nodes:
            self.nodes["sim_exo"].start()

    def counts(self) -> dict[str, dict[str, dict[str, int]]]:
        """Per node: messages received and published per topic (the nodes with counters)."""
        out = {}
        for name, node in self.nodes.items():
            health = getattr(node, "health", None)
            if health is not None:
                out[name] = {"received": dict(health.received), "published": dict(health.published),
                             "dropped": health.dropped, "repeated": health.repeated}
        if self.recorder is not None:
            out[RECORDER_NODE] = {"received": dict(self.recorder.counts), "published": {},
                                  "dropped": 0, "repeated": 0}
        return out

    def drained(self) -> bool:
        """True when the EMG source ran out and every counted subscriber has received every
        message its publishers sent (``/diagnostics`` aside)."""
        if self.source is None or not self.source.finished.is_set():
            return False
        sent: dict[str, int] = {}
        for node in self.nodes.values():  # by full name: an observer's msk/... is NS/msk/...
            health = getattr(node, "health", None)
            for topic, count in (health.published.items() if health is not None else ()):
                name = node.resolve_topic_name(topic)
                sent[name] = sent.get(name, 0) + count
        for node in self.nodes.values():
            health = getattr(node, "health", None)
            for topic, count in (health.received.items() if health is not None else ()):
                name = node.resolve_topic_name(topic)
                if name in sent and count < sent[name]:
                    return False
        if self.recorder is not None:
            for topic, count in self.recorder.counts.items():
                if topic in sent and count < sent[topic]:
                    return False
        return True

    def run(self, *, duration: float | None = None, drain_timeout: float = 5.0,
            stop: threading.Event | None = None,
            progress: Callable[[float], None] | None = None) -> str:
        """Spin until ``duration`` s pass, the session is drained, or ``stop`` is set.

        Returns why it stopped: ``"duration"``, ``"drained"``, ``"stopped"`` or
        ``"drain timeout"`` (the source ended but messages never arrived: drops).
        """
        start = time.monotonic()
        finished_at = None
        while True:
            self.spin_for(0.1)
            now = time.monotonic()
            if progress is not None:
                progress(now - start)
            if stop is not None and stop.is_set():
                return "stopped"
            if duration is not None and now - start >= duration:
                return "duration"
            if self.source is not None and self.source.finished.is_set():
                if self.drained():
                    self.spin_for(0.05)
                    return "drained"
                finished_at = finished_at or now
                if now - finished_at > drain_timeout:
                    return "drain timeout"

    def close(self) -> None:
        """Ordered shutdown: zero torque, stop the driver, finish the bag, destroy, shut down."""
        import rclpy

        if self._closed:
            return
        self._closed = True
        controller = self.nodes.pop("assist_controller", None)
        executor = getattr(self, "executor", None)
        if controller is not None:
            if executor is not None:
                executor.remove_node(controller)
            controller.destroy_node()  # publishes zero torque
        for name in ("emg_driver", "sim_exo"):
            source = self.nodes.pop(name, None)
            if source is not None:
                if executor is not None:
                    executor.remove_node(source)
                source.destroy_node()  # stops streaming
        if self.player is not None:
            self.player.stop()
        if executor is not None:
            self.spin_for(0.1)  # deliver what is in flight to the recorder
        if self.recorder is not None:
            self.recorder.close()
        for node in list(self.nodes.values()) + self._extra_nodes:
            if executor is not None:
                executor.remove_node(node)
            node.destroy_node()
        if executor is not None:
            executor.shutdown()
        rclpy.try_shutdown(context=self.context)
        sys.setswitchinterval(self._switch_interval)

    def __enter__(self) -> Graph:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``emg-msk run``."""
    parser.description = __doc__.splitlines()[0].replace("``", "")
    parser.add_argument("--config", type=Path, default=None,
                        help="ROS 2 parameters file (default: the package's config/pipeline.yaml)")
    parser.add_argument("--bag", type=Path, help="replay this session bag through the driver")
    parser.add_argument("--rate", type=float, help="replay speed factor (driver parameter rate)")
    parser.add_argument("--replay-topics", nargs="+", default=(), metavar="TOPIC",
                        help="with --bag: also replay these topics of the session (e.g. "
                             "/joint_states as the exoskeleton's measurement)")
    parser.add_argument("--record", type=Path, help="record the graph's topics to this new bag")
    parser.add_argument("--record-topics", nargs="+", metavar="TOPIC",
                        help="record only these topics (default: every topic the graph publishes)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--executor", choices=EXECUTORS, default="events",
                        help="rclpy executor (default: events; single/multi are the standard ones)")
    parser.add_argument("--no-intra-process", dest="intra_process", action="store_false",
                        help="the EMG topics between the nodes over DDS too (default: in process, "
                             "on the driver's thread)")


def graph_config(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config file with the command line's driver overrides applied."""
    config = load_config(args.config)
    if args.bag is None and args.rate is None:
        return config
    if "sim_exo" in config:
        raise GraphError("--bag and --rate set the emg_driver, but this config runs sim_exo")
    driver = config.setdefault("emg_driver", {})
    if args.bag is not None:
        driver.update(source="bag", bag_path=str(args.bag))
    if args.rate is not None:
        driver["rate"] = float(args.rate)
    return config


def run(args: argparse.Namespace) -> int:
    """Build, start and run the graph; Ctrl-C (or SIGTERM) stops it cleanly."""
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        config = graph_config(args)
        with Graph(config, executor=args.executor, record=args.record,
                   record_topics=args.record_topics, replay_topics=args.replay_topics,
                   intra_process=args.intra_process) as graph:
            graph.start()
            recording = f"; recording to {args.record}" if args.record else ""
            links = "" if args.intra_process else ", EMG topics over DDS"
            print(f"emg-msk run: {', '.join(graph.nodes)} running ({args.executor} executor"
                  f"{links}){recording}; Ctrl-C stops", flush=True)
            reason = graph.run(duration=args.duration, stop=stop)
            print(f"emg-msk run: stopping ({reason})", flush=True)
            for name, count in graph.counts().items():
                print(f"  {name:18s} in {sum(count['received'].values()):7d}  out "
                      f"{sum(count['published'].values()):7d}  dropped {count['dropped']}  "
                      f"repeated {count['repeated']}")
    except (GraphError, OSError, ValueError) as exc:
        print(f"emg-msk run: {exc}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
