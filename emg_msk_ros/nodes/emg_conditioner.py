"""``emg_conditioner``: ``emg/raw`` (volts) → ``emg/envelope`` (excitation 0..1 at the model rate).

Runs the streaming conditioner of :mod:`emg_msk_ros.signal` with the settings and MVC
calibration saved in the model folder (parameter ``model``), so live features equal the ones the
model was trained on; ``calibration_file`` replaces the model's calibration (a new MVC session).
Without a model, ``conditioning_file`` and ``calibration_file`` give both.

A stream whose channels or sample rate differ from the model's is refused (ERROR on
``/diagnostics``, nothing published) until a matching stream arrives. Dropped, repeated, invalid
(NaN/Inf) and saturated samples are reported as WARN. While a channel is flat (a dead or
unplugged electrode, or one whose samples are all invalid and held: see ``quality`` in the
conditioning settings), its envelope would be a made-up constant, so nothing is published and
the status is ERROR: the estimate goes stale and the assist controller's watchdog takes the
torque to zero. Publishing resumes with the first chunk after every channel has signal again;
a jump in the stream restarts the filters but keeps that verdict. The first quality window of a
stream (``quality.window_s``, 0.25 s) is published before it is judged; the shipped models'
windows are 0.7 s, so none of their estimates comes from it alone.

Envelope sample ``k`` is taken at raw sample ``k · decimation``; its stamp is that raw sample's
acquisition time, and ``first_sample_index`` counts envelope samples.
"""

from __future__ import annotations

from rclpy.node import Node

from emg_msk_ros.learning.metadata import read_model_meta
from emg_msk_ros.msg import EmgArray
from emg_msk_ros.nodes.common import (
    TOPIC_ENVELOPE,
    TOPIC_RAW,
    Health,
    chunk_values,
    declare,
    declare_common,
    float32_array,
    resolve_model,
    sensor_qos,
    stamp_ns,
    to_stamp,
)
from emg_msk_ros.nodes.local_links import LocalLinks
from emg_msk_ros.signal import Calibration, Conditioner, StreamFormatError, load_settings


class EmgConditioner(Node):
    """Conditions each raw chunk as it arrives; publishes the excitation samples it completes."""

    def __init__(self, **kwargs) -> None:
        super().__init__("emg_conditioner", **kwargs)
        model = declare(self, "model", "knee", "model folder (or name under the package's "
                        "models/) whose conditioning settings and calibration to use; empty: "
                        "conditioning_file + calibration_file")
        conditioning_file = declare(self, "conditioning_file", "", "conditioning YAML when no "
                                    "model is given (empty: the package's conditioning.yaml)")
        calibration_file = declare(self, "calibration_file", "", "MVC calibration YAML; "
                                   "replaces the model's")
        depth, period, stale = declare_common(self)
        self.health = Health(self, "EMG conditioning", period=period, stale_after=stale,
                             extra=self._diagnostic_values)
        self.settings, self.calibration, self.expected = self._load(model, conditioning_file,
                                                                    calibration_file)
        self.conditioner: Conditioner | None = None
        self.invalid_samples = 0
        self.publisher = self.create_publisher(EmgArray, TOPIC_ENVELOPE, sensor_qos(depth))
        self.links = LocalLinks()  # in-process subscribers of emg/envelope (emg-msk run)
        self.subscription = self.create_subscription(EmgArray, TOPIC_RAW, self.on_raw,
                                                     sensor_qos(depth))

    @staticmethod
    def _load(model: str, conditioning_file: str, calibration_file: str):
        """(settings, calibration or None, (channels, sample rate) the model needs or None)."""
        expected = None
        if model:
            found = read_model_meta(resolve_model(model))
            settings, calibration = found.conditioning, found.calibration
            expected = (list(found.meta["channel_names"]), float(found.meta["sample_rate"]))
        else:
            settings = load_settings(conditioning_file or None)
            calibration = None
        if calibration_file:
            calibration = Calibration.load(calibration_file)
            calibration.check_settings(settings)
        return settings, calibration, expected

    def _diagnostic_values(self) -> dict:
        values = {"invalid samples": self.invalid_samples}
        if self.conditioner is not None:
            values["output rate (Hz)"] = f"{self.conditioner.output_rate:g}"
            values.update({f"flat/saturated {name}": "yes" for name in
                           self.conditioner.quality.flat_names
                           + self.conditioner.quality.saturated_names})
        return values

    def _start(self, msg: EmgArray) -> Conditioner | None:
        names = list(msg.channel_names)
        if self.expected is not None:
            channels, rate = self.expected
            if names != channels:
                self.health.fail(f"refusing emg/raw: the model expects channels {channels} "
                                 f"(in this order), the stream has {names}")
                return None
            if abs(msg.sample_rate - rate) > 1e-6 * rate:
                self.health.fail(f"refusing emg/raw: the model was trained at {rate:g} Hz, "
                                 f"the stream is {msg.sample_rate:g} Hz")
                return None
        try:
            conditioner = Conditioner(self.settings, msg.sample_rate, names, self.calibration)
        except ValueError as exc:
            self.health.fail(f"refusing emg/raw: {exc}")
            return None
        self.health.error = None
        self.get_logger().info(f"conditioning {len(names)} channels at {msg.sample_rate:g} Hz "
                               f"-> {conditioner.output_rate:g} Hz")
        return conditioner

    def on_raw(self, msg: EmgArray) -> None:
        """Condition one chunk and publish the envelope samples it completes."""
        self.health.input(TOPIC_RAW)
        if msg.unit != EmgArray.UNIT_VOLT:
            self.health.fail(f"refusing emg/raw: unit {msg.unit} is not UNIT_VOLT")
            return
        if self.conditioner is None:
            self.conditioner = self._start(msg)
            if self.conditioner is None:
                return
        data = chunk_values(msg, len(self.conditioner.channel_names), self.health)
        if data is None:
            return
        try:
            out = self.conditioner.process(data, msg.first_sample_index,
                                           sample_rate=msg.sample_rate,
                                           channel_names=msg.channel_names)
        except StreamFormatError as exc:
            self.health.fail(f"emg/raw changed format mid-stream: {exc}")
            self.conditioner = None
            return
        report = out.report
        if not report.ok:
            self.health.dropped += report.gap
            self.health.repeated += report.repeated
            self.invalid_samples += sum(report.invalid.values())
            for line in report.messages():
                self.health.note(line)
        flat = self.conditioner.quality.flat_names
        if flat:
            self.health.fail(f"withholding emg/envelope: flat signal on channel(s) "
                             f"{', '.join(flat)} (electrode off or dead?)")
            return
        if self.health.error is not None:  # every check above is made again on each chunk
            self.health.error = None
            self.get_logger().info("emg/raw is usable again: emg/envelope resumed")
        if out.excitation.shape[0]:
            self._publish(msg, out)

    def _publish(self, raw: EmgArray, out) -> None:
        first_raw = out.first_raw_index
        stamp = stamp_ns(raw.header.stamp) + round(
            (first_raw - raw.first_sample_index) * 1e9 / raw.sample_rate)
        msg = EmgArray(sample_rate=self.conditioner.output_rate,
                       channel_names=raw.channel_names, num_samples=out.excitation.shape[0],
                       first_sample_index=out.first_output_index, unit=EmgArray.UNIT_EXCITATION)
        msg.header.frame_id = raw.header.frame_id
        msg.header.stamp = to_stamp(stamp)
        msg.data = float32_array(out.excitation)
        self.links.publish(self.publisher, msg)
        self.health.output(TOPIC_ENVELOPE)


def main(argv=None) -> int:
    """Run the conditioner until Ctrl-C."""
    from emg_msk_ros.nodes.common import node_main

    return node_main(EmgConditioner, argv)


if __name__ == "__main__":
    raise SystemExit(main())
