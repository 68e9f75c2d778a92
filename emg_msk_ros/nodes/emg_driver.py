"""``emg_driver``: publishes raw EMG on ``emg/raw`` (EmgArray, volts) from a source.

Sources (parameter ``source``): ``sim`` (a simulated session streamed in real time), ``bag``
(a session bag's ``/emg/raw``), ``file`` (a UCI or CSV recording), ``lsl`` (a Lab Streaming
Layer stream of type EMG; needs pylsl). A lifecycle node: the source opens in *configure*,
streams while *active* (in a thread of its own, so chunks leave on time), closes in *cleanup*.
With ``autostart`` (default) ``main()`` configures and activates it at once. An LSL stream that
is not there yet, or goes away, is awaited while active: WARN on ``/diagnostics`` with the
source's state, and streaming resumes (with a jump in the index) when it is back.

Each chunk carries ``first_sample_index`` (consecutive across chunks) and the stamp of its first
sample; see :mod:`emg_msk_ros.io.sources` for how replayed sessions are timed.
"""

from __future__ import annotations

import threading
import time

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from emg_msk_ros.io import sources
from emg_msk_ros.msg import EmgArray
from emg_msk_ros.nodes.common import (
    TOPIC_RAW,
    Health,
    declare,
    declare_common,
    float32_array,
    sensor_qos,
    to_stamp,
)
from emg_msk_ros.nodes.local_links import LocalLinks


class EmgDriver(LifecycleNode):
    """Streams EMG chunks from the configured source while active."""

    def __init__(self, **kwargs) -> None:
        super().__init__("emg_driver", **kwargs)
        self.source = None
        self.publisher = None
        self.links = LocalLinks()  # in-process subscribers of emg/raw (emg-msk run)
        self.streaming = False
        self.finished = threading.Event()  # the source ran out (never set when looping)
        self.samples_published = 0
        self._last_problem: str | None = None
        self.stream_start_ns: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Source parameters are read at each configure: change them while unconfigured.
        declare(self, "source", "sim", "where EMG comes from", choices=sources.SOURCES,
                read_only=False)
        declare(self, "chunk_size", 10, "samples per EmgArray (sim, bag, file)", low=1,
                high=1000, read_only=False)
        declare(self, "rate", 1.0, "replay speed factor (sim, bag, file); stamps equal "
                "acquisition times only at 1", low=0.01, high=100.0, read_only=False)
        declare(self, "start_offset", 0.0, "s into the recording to start from (sim, bag, "
                "file)", low=0.0, high=1.0e6, read_only=False)
        declare(self, "loop", False, "start over at the end (sim, bag, file)", read_only=False)
        declare(self, "sim_preset", "knee", "sim: musculoskeletal preset", read_only=False)
        declare(self, "sim_duration", 30.0, "sim: session length, s", low=1.0, high=3600.0,
                read_only=False)
        declare(self, "sim_seed", 1, "sim: random seed", low=0, high=2**31 - 1,
                read_only=False)
        declare(self, "sim_sample_rate", 2000.0, "sim: EMG sample rate, Hz", low=200.0,
                high=20000.0, read_only=False)
        declare(self, "bag_path", "", "bag: session bag folder", read_only=False)
        declare(self, "file_path", "", "file: recording to stream", read_only=False)
        declare(self, "file_format", "uci", "file: format", choices=sources.FILE_FORMATS,
                read_only=False)
        declare(self, "file_column_map", "", "file: YAML column map (csv)", read_only=False)
        declare(self, "lsl_name", "", "lsl: stream name (empty: the first stream of type EMG)",
                read_only=False)
        declare(self, "lsl_timeout", 5.0, "lsl: s configure waits for the stream (then it is "
                "awaited while active)", low=0.1, high=600.0, read_only=False)
        declare(self, "lsl_scale", 1.0, "lsl: volts per stream unit (1e-6 for µV)",
                low=1e-12, high=1e3, read_only=False)
        declare(self, "lsl_max_chunk", 100, "lsl: most samples per EmgArray; each holds what "
                "has arrived, so the amplifier's chunks set the latency", low=1, high=10000,
                read_only=False)
        declare(self, "lsl_gap_tolerance", 0.005, "lsl: s a chunk's LSL timestamp may be late "
                "before the samples it skips count as missing (a jump in first_sample_index)",
                low=0.0, high=10.0, read_only=False)
        declare(self, "frame_id", "emg", "header frame_id of emg/raw", read_only=False)
        declare(self, "min_subscribers", 1, "subscribers emg/raw must have before streaming "
                "starts", low=0, high=100, read_only=False)
        self.autostart = declare(self, "autostart", True, "configure and activate on start-up")
        depth, period, stale = declare_common(self)
        self._qos = sensor_qos(depth)
        self.health = Health(self, "EMG source", period=period, stale_after=stale,
                             watch_input=lambda: self.streaming, extra=self._diagnostic_values)

    def param(self, name: str):
        """The current value of a parameter."""
        return self.get_parameter(name).value

    @property
    def rate(self) -> float:
        """Replay speed factor."""
        return self.param("rate")

    @property
    def start_offset(self) -> float:
        """Start offset into the recording, s."""
        return self.param("start_offset")

    @property
    def loop(self) -> bool:
        """Whether the replay loops."""
        return self.param("loop")

    def _diagnostic_values(self) -> dict:
        values = {"source": self.param("source"), "samples published": self.samples_published,
                  "finished": self.finished.is_set()}
        if isinstance(self.source, sources.LslSource):
            values["source state"] = self.source.state
        return values

    def _source_problem(self, problem: str) -> None:
        """A problem of the source (stream lost, waiting for it, samples missing): logged when
        new, and on /diagnostics (WARN) in the next report."""
        if problem != self._last_problem:
            self.get_logger().warning(problem)
            self._last_problem = problem
        if problem not in self.health.problems:
            self.health.note(problem)

    def _make_source(self):
        kind, p = self.param("source"), self.param
        if kind == "lsl":
            return sources.LslSource(p("lsl_name"), p("lsl_timeout"), scale=p("lsl_scale"),
                                     max_chunk=p("lsl_max_chunk"),
                                     gap_tolerance=p("lsl_gap_tolerance"),
                                     report=self._source_problem)
        if kind == "sim":
            recording = sources.simulated_recording(p("sim_preset"), p("sim_duration"),
                                                    p("sim_seed"), p("sim_sample_rate"))
        elif kind == "bag":
            if not p("bag_path"):
                raise sources.SourceError("source 'bag' needs parameter bag_path")
            recording = sources.bag_recording(p("bag_path"))
        else:
            if not p("file_path"):
                raise sources.SourceError("source 'file' needs parameter file_path")
            recording = sources.file_recording(p("file_path"), p("file_format"),
                                               p("file_column_map") or None)
        return sources.RecordingSource(recording, p("chunk_size"), rate=p("rate"),
                                       start_offset=p("start_offset"), loop=p("loop"))

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            source = self._make_source()
            source.open()
        except (OSError, ValueError, RuntimeError) as exc:
            self.health.fail(f"cannot open EMG source {self.param('source')!r}: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.source = source
        self.health.error = None
        self.publisher = self.create_lifecycle_publisher(EmgArray, TOPIC_RAW, self._qos)
        if source.channel_names:
            self._announce(source)
        return TransitionCallbackReturn.SUCCESS

    def _announce(self, source) -> None:
        self.get_logger().info(
            f"source {self.param('source')}: {len(source.channel_names)} channels "
            f"({', '.join(source.channel_names)}) at {source.sample_rate:g} Hz")

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        self._stop.clear()
        self.finished.clear()
        self.stream_start_ns = None
        self._thread = threading.Thread(target=self._stream, name="emg_driver_stream",
                                        daemon=True)
        self._thread.start()
        return result

    def _stop_streaming(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.streaming = False

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_streaming()
        return super().on_deactivate(state)

    def _release(self) -> None:
        self._stop_streaming()
        if self.source is not None:
            self.source.close()
            self.source = None
        if self.publisher is not None:
            self.destroy_lifecycle_publisher(self.publisher)
            self.publisher = None

    def destroy_node(self) -> None:
        """Stop streaming and release the source before the node goes."""
        self._release()
        super().destroy_node()

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _wait_for_subscribers(self) -> bool:
        wanted, waited = self.param("min_subscribers"), 0
        while (have := self.publisher.get_subscription_count() + len(self.links)) < wanted:
            if waited % 100 == 0:
                self.health.note(f"waiting for {wanted} subscriber(s) on {TOPIC_RAW}, have {have}")
            waited += 1
            if self._stop.wait(0.01):
                return False
        return True

    def _stream(self) -> None:
        """Publish chunks as the source releases them (runs in its own thread)."""
        if not self._wait_for_subscribers():
            return
        source = self.source
        template = None  # an LSL stream's channels are known once it has been found
        announced = bool(source.channel_names)  # logged at configure
        self.stream_start_ns = time.time_ns()
        self.streaming = True
        try:
            for chunk in source.stream(self.stream_start_ns, self._stop):
                if self._stopping():
                    return
                if template is None:
                    template = EmgArray(sample_rate=float(source.sample_rate),
                                        channel_names=list(source.channel_names),
                                        unit=EmgArray.UNIT_VOLT)
                    template.header.frame_id = self.param("frame_id")
                    if not announced:
                        self._announce(source)
                self.publish_chunk(template, chunk)
                self._last_problem = None
            if not self._stopping():
                self.finished.set()
                self.get_logger().info(
                    f"source {self.param('source')} finished after {self.samples_published} "
                    "samples")
        except Exception as exc:  # noqa: BLE001 - a failing source must show, not kill silently
            if not self._stopping():  # else the publisher went with its context: a clean stop
                self.health.fail(f"EMG source {self.param('source')!r} failed: {exc}")
        finally:
            self.streaming = False

    def _stopping(self) -> bool:
        """Whether streaming is to end: stop asked, or the context shut down (Ctrl-C)."""
        return self._stop.is_set() or not self.context.ok()

    def publish_chunk(self, template: EmgArray, chunk: sources.Chunk) -> None:
        """Publish one chunk (data (n, C) in V) as an EmgArray."""
        msg = EmgArray(sample_rate=template.sample_rate, channel_names=template.channel_names,
                       unit=template.unit, num_samples=chunk.data.shape[0],
                       first_sample_index=chunk.first_sample_index)
        msg.header.frame_id = template.header.frame_id
        msg.header.stamp = to_stamp(chunk.stamp_ns)
        msg.data = float32_array(chunk.data)
        self.links.publish(self.publisher, msg)
        self.samples_published += chunk.data.shape[0]
        self.health.input("source")
        self.health.output(TOPIC_RAW)


def main(argv=None) -> int:
    """Run the driver; with ``autostart`` it configures and activates itself."""
    from emg_msk_ros.nodes.common import node_main

    def factory():
        node = EmgDriver()
        if node.autostart:
            node.trigger_configure()
            if node.source is None:
                raise RuntimeError(node.health.error or "configure failed")
            node.trigger_activate()
        return node

    return node_main(factory, argv)


if __name__ == "__main__":
    raise SystemExit(main())
