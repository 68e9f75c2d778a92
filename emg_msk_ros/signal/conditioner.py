"""The stateful, causal EMG conditioning chain, for streams and for whole recordings.

Per channel: band-pass → notch(es) → full-wave rectification → low-pass envelope → decimation
to the model rate → normalisation to a reference (MVC) envelope → clip to [0, 1].

Output sample ``k`` is the envelope at raw sample index ``k·q + q − 1`` of the stream (``q`` =
sample rate / output rate): the last sample of its block of ``q``, i.e. at time
``(k·q + q − 1) / sample_rate`` after the stream's sample 0; it depends only on raw samples
``0 .. k·q + q − 1``. Taking the block's last sample rather than its first means an output is
due as soon as the chunk holding that sample arrives (with chunks that divide ``q``, every
output is the newest sample of a chunk), not a chunk later. The offline path (:func:`condition_offline`,
:func:`condition_recording`) is the streaming path run over one chunk, so training features and
live features are computed by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from emg_msk_ros.signal.config import ConditioningSettings, ConfigError
from emg_msk_ros.signal.filters import SosCascade, design_filters, filter_inplace
from emg_msk_ros.signal.quality import QualityMonitor

if TYPE_CHECKING:
    from emg_msk_ros.io.recording import Recording
    from emg_msk_ros.signal.calibration import Calibration


class StreamFormatError(ValueError):
    """A chunk whose sample rate, channel set or shape differs from the stream's."""


@dataclass(frozen=True, slots=True)
class ChunkReport:
    """What happened to one chunk besides filtering (all counts in raw samples)."""

    invalid: dict[str, int] = field(default_factory=dict)  # channel -> NaN/Inf/out-of-range
    gap: int = 0  # samples missing before this chunk (first_sample_index jumped forward)
    bridged: int = 0  # missing samples filled by holding the last valid sample
    repeated: int = 0  # samples dropped because they were already processed
    reset: bool = False  # filters were reset (long gap, or the stream restarted)
    flat: tuple[str, ...] = ()  # channels whose latest window is flat
    saturated: tuple[str, ...] = ()  # channels whose latest window is clipped

    @property
    def ok(self) -> bool:
        """True when nothing was wrong with this chunk or the channels."""
        return not (self.invalid or self.gap or self.repeated or self.reset
                    or self.flat or self.saturated)

    def messages(self) -> list[str]:
        """One human-readable line per problem (for logs and diagnostics)."""
        lines = [f"channel {name}: {count} invalid sample(s) (NaN/Inf/out of range) replaced"
                 for name, count in self.invalid.items()]
        if self.gap:
            action = "reset filters" if self.reset else f"bridged {self.bridged}"
            lines.append(f"{self.gap} sample(s) dropped before this chunk; {action}")
        elif self.reset:
            lines.append("stream restarted (index jumped back); filters reset")
        if self.repeated:
            lines.append(f"{self.repeated} repeated sample(s) dropped")
        lines += [f"channel {name}: flat line" for name in self.flat]
        lines += [f"channel {name}: saturated (clipped)" for name in self.saturated]
        return lines


@dataclass(slots=True)
class ConditionerOutput:
    """Excitation for the output samples completed by one chunk.

    ``excitation[j]`` is output sample ``first_output_index + j``, taken at raw stream index
    ``(first_output_index + j + 1) · decimation − 1`` (:func:`output_raw_index`).
    """

    excitation: np.ndarray  # (n_out, channels), 0..1 (volts when unnormalised)
    first_output_index: int
    decimation: int
    report: ChunkReport

    @property
    def first_raw_index(self) -> int:
        """Raw stream sample index of the first output sample."""
        return output_raw_index(self.first_output_index, self.decimation)

    @property
    def raw_index(self) -> np.ndarray:
        """Raw stream sample index of each output sample, (n_out,)."""
        return output_raw_index(self.first_output_index + np.arange(self.excitation.shape[0]),
                                self.decimation)


def output_raw_index(output_index, decimation: int):
    """Raw stream index at which output sample ``output_index`` is taken: the last of its block."""
    return (output_index + 1) * decimation - 1


class _CalibrationScale:
    """Divide by fixed references (V), in place on (n_out, channels)."""

    def __init__(self, reference: np.ndarray) -> None:
        self._inverse = (1.0 / reference)[None, :]

    def apply(self, envelope: np.ndarray) -> np.ndarray:
        return np.multiply(envelope, self._inverse, out=envelope)

    def reset(self) -> None:
        """Nothing to forget: the references are fixed."""


class _RunningPeakScale:
    """Divide by the running peak of the envelope (never below a floor), output by output."""

    def __init__(self, n_channels: int, floor: float) -> None:
        self._floor = floor
        self._peak = np.full((1, n_channels), floor)

    def apply(self, envelope: np.ndarray) -> np.ndarray:
        if envelope.shape[0] == 1:  # the usual streaming case, without the accumulate call
            self._peak = np.maximum(envelope, self._peak)
            return np.divide(envelope, self._peak, out=envelope)
        peak = np.maximum.accumulate(envelope, axis=0)
        np.maximum(peak, self._peak, out=peak)
        self._peak = peak[-1:].copy()
        return np.divide(envelope, peak, out=envelope)

    def reset(self) -> None:
        self._peak[:] = self._floor


class _Unscaled:
    def apply(self, envelope: np.ndarray) -> np.ndarray:
        return envelope

    def reset(self) -> None:
        """Nothing to forget."""


class Conditioner:
    """Streaming conditioner for one EMG stream (fixed sample rate and channel set).

    ``process(chunk, first_sample_index)`` takes raw EMG (n, channels) in volts and returns the
    excitation samples that the chunk completes. ``unnormalised=True`` returns the envelope in
    volts instead (no normalisation, no clipping): that is what calibration measures.
    """

    def __init__(self, settings: ConditioningSettings, sample_rate: float,
                 channel_names: list[str] | tuple[str, ...],
                 calibration: Calibration | None = None, *, unnormalised: bool = False) -> None:
        self.settings = settings
        self.channel_names = list(channel_names)
        if not self.channel_names or len(set(self.channel_names)) != len(self.channel_names):
            raise ConfigError(f"channel names must be unique and not empty, got {channel_names}")
        self.design = design_filters(settings, sample_rate)
        self.sample_rate = self.design.sample_rate
        self.decimation = self.design.decimation
        self.output_rate = self.design.output_rate
        n = len(self.channel_names)
        self._no_output = np.empty((0, n))
        self._no_output.flags.writeable = False
        self._ones, self._zeros = np.ones((1, n)), np.zeros((1, n))  # clip bounds, one row
        self._pre = SosCascade(self.design.pre_sos, n)
        self._env = SosCascade(self.design.envelope_sos, n)
        self._pre_sos, self._env_sos = self._pre.sos, self._env.sos
        self._quality = QualityMonitor(settings.quality, self.sample_rate, self.channel_names)
        self._clip = not unnormalised
        self._scale = self._make_scale(settings, calibration, unnormalised)
        self._limit = settings.bad_samples.valid_abs_max_v
        self._limit_squared = self._limit ** 2
        self._hold = settings.bad_samples.output == "hold"
        gaps = settings.gaps
        self._bridge_limit = round(gaps.max_bridge_s * self.sample_rate)
        self._bridge = gaps.policy == "bridge"
        self.reset()

    def _make_scale(self, settings, calibration, unnormalised):
        if unnormalised:
            return _Unscaled()
        if settings.normalisation.mode == "running":
            return _RunningPeakScale(len(self.channel_names),
                                     settings.normalisation.running_floor_v)
        if calibration is None:
            raise ConfigError(
                "conditioning.normalisation.mode is 'calibration' but no calibration was given: "
                "compute one from an MVC recording (signal.calibration.compute_calibration) or "
                "opt into a running estimate with normalisation.mode: running"
            )
        calibration.check_settings(settings)
        return _CalibrationScale(calibration.reference_for(self.channel_names))

    def reset(self) -> None:
        """Start a new stream: filter state, sample index, quality flags, running peak."""
        self._scale.reset()
        self._quality.reset()
        self._last_valid = np.zeros(len(self.channel_names))
        self._restart(0)
        self._started = False

    def _restart(self, index: int) -> None:
        self._next_index = index
        self._fresh = True  # filters are set to steady state on the next sample
        self._deferred: list[np.ndarray] = []  # raw chunks (channels, samples) not yet checked
        self._quality.restart()
        self._last_output = np.zeros(len(self.channel_names))
        self._bad_pending = np.zeros(len(self.channel_names), dtype=bool)
        self._bad_pending_any = False
        self._clean_report = ChunkReport()

    @property
    def quality(self) -> QualityMonitor:
        """The flat/saturation monitor (flags of the latest window, counts since reset)."""
        return self._quality

    @property
    def next_sample_index(self) -> int:
        """The raw stream index the next chunk is expected to start at."""
        return self._next_index

    def _check_format(self, sample_rate, channel_names) -> None:
        fs = self.sample_rate
        if sample_rate is not None and abs(sample_rate - fs) > 1e-9 * fs:
            raise StreamFormatError(
                f"sample_rate changed mid-stream: {sample_rate:g} Hz, the stream is "
                f"{self.sample_rate:g} Hz; start a new Conditioner for a new stream"
            )
        if channel_names is not None and list(channel_names) != self.channel_names:
            raise StreamFormatError(
                f"channel_names changed mid-stream: {list(channel_names)}, the stream has "
                f"{self.channel_names}; start a new Conditioner for a new stream"
            )

    def _align(self, x: np.ndarray, first: int, events: dict) -> np.ndarray:
        """Handle a chunk that does not start at the expected index; return what to filter."""
        jump = first - self._next_index
        if not self._started:
            self._next_index = first
        elif jump > 0:
            events["gap"] = jump
            if self._bridge and jump <= self._bridge_limit:
                events["bridged"] = jump
                held = np.broadcast_to(self._last_valid, (jump, x.shape[1]))
                return np.concatenate([held, x])
            events["reset"] = True
            self._restart(first)
        elif -jump <= self._bridge_limit:
            events["repeated"] = min(-jump, x.shape[0])
            return x[events["repeated"]:]
        else:
            events["reset"] = True
            self._restart(first)
        return x

    def _replace_invalid(self, x: np.ndarray, events: dict) -> np.ndarray:
        """Put each channel's last valid sample in place of invalid ones; return the mask."""
        with np.errstate(invalid="ignore"):
            bad = ~(np.abs(x) <= self._limit)  # NaN compares False
        invalid = events.setdefault("invalid", {})  # counts of stored chunks run first
        for c in np.flatnonzero(bad.any(axis=1)):
            name = self.channel_names[c]
            invalid[name] = invalid.get(name, 0) + int(bad[c].sum())
            index = np.where(bad[c], -1, np.arange(x.shape[1]))
            index = np.maximum.accumulate(index)
            held = np.where(index >= 0, x[c, np.maximum(index, 0)], self._last_valid[c])
            x[c] = held
        return bad

    def _bad_outputs(self, bad: np.ndarray | None, positions: np.ndarray, n: int) -> np.ndarray:
        """(n_out, channels): outputs whose raw block (previous output, this output] had an
        invalid sample; carries the pending flag across chunks."""
        count = np.zeros((len(self.channel_names), n), dtype=np.int64) if bad is None \
            else np.cumsum(bad, axis=1)
        if positions.size == 0:
            self._bad_pending |= count[:, -1] > 0
            in_block = np.zeros((len(self.channel_names), 0), dtype=bool)
        else:
            at = count[:, positions]
            in_block = np.diff(at, axis=1, prepend=0) > 0
            in_block[:, 0] |= self._bad_pending
            self._bad_pending = count[:, -1] > at[:, -1]
        self._bad_pending_any = bool(self._bad_pending.any())
        return in_block.T

    def _apply_bad_policy(self, y: np.ndarray, bad_out: np.ndarray) -> None:
        if self._hold:
            good_index = np.where(bad_out, -1, np.arange(y.shape[0])[:, None])
            good_index = np.maximum.accumulate(good_index, axis=0)
            previous = np.take_along_axis(y, np.maximum(good_index, 0), axis=0)
            y[...] = np.where(good_index >= 0, previous, self._last_output[None, :])
        else:
            y[bad_out] = 0.0

    def process(self, chunk: np.ndarray, first_sample_index: int | None = None, *,
                sample_rate: float | None = None,
                channel_names: list[str] | None = None) -> ConditionerOutput:
        """Condition the next chunk of raw EMG (n, channels) in volts.

        ``first_sample_index`` is the stream index of the chunk's first sample (None: it follows
        the previous chunk). ``sample_rate``/``channel_names``, when given, must match the
        stream's, or :class:`StreamFormatError` is raised.

        A chunk that completes no output sample is only stored: it is checked and filtered with
        the next chunk that completes one (or before a jump in the index), so its invalid samples
        are counted in that chunk's report. The outputs are the same to the bit.
        """
        if sample_rate is not None or channel_names is not None:
            self._check_format(sample_rate, channel_names)
        x = np.asarray(chunk, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.channel_names):
            raise StreamFormatError(
                f"chunk must have shape (samples, {len(self.channel_names)}) for channels "
                f"{self.channel_names}, got {x.shape}"
            )
        events: dict = {}
        if first_sample_index is not None and first_sample_index != self._next_index:
            self._run_deferred(events)
            x = self._align(x, int(first_sample_index), events)
        start = self._next_index
        n = x.shape[0]
        self._next_index = start + n
        q = self.decimation
        if n and (start + n) // q == start // q:  # no output completes in this chunk
            self._deferred.append(x.T.copy())
            self._started = True
            return ConditionerOutput(self._no_output, start // q, q, self._report(events))
        if self._deferred:
            self._deferred.append(x.T)
            raw = self._take_deferred()
            return self._condition(raw, start - (raw.shape[1] - n), events)
        return self._condition(x.T.copy(), start, events)

    def _take_deferred(self) -> np.ndarray:
        """The stored chunks joined into one new C-ordered (channels, samples) array (the
        filter kernel needs that; concatenate keeps a transposed input's order); the store
        empties."""
        raw = np.ascontiguousarray(np.concatenate(self._deferred, axis=1))
        self._deferred = []
        return raw

    def _run_deferred(self, events: dict) -> None:
        """Check and filter the stored chunks now (they complete no output)."""
        if self._deferred:
            raw = self._take_deferred()
            self._condition(raw, self._next_index - raw.shape[1], events)

    def _condition(self, raw: np.ndarray, start: int, events: dict) -> ConditionerOutput:
        """Check, filter, decimate and normalise raw samples (channels, n) from index ``start``;
        ``raw`` must be private to the conditioner: it is filtered in place."""
        n = raw.shape[1]
        q = self.decimation
        offset = (q - 1 - start) % q  # position of the first output's raw sample in ``x``
        first_output = (start + offset) // q
        if n == 0:
            return ConditionerOutput(self._no_output, first_output, q, self._report(events))
        self._started = True
        bad = None
        flat = raw.ravel()
        # One reduction screens the chunk: NaN/Inf propagate, and any |x| > limit makes the sum
        # of squares exceed limit²; only then is each sample checked.
        if not np.dot(flat, flat) <= self._limit_squared:
            bad = self._replace_invalid(raw, events)
        self._last_valid = raw[:, -1].copy()
        self._quality.update(raw)

        bad_out = None
        if bad is not None or self._bad_pending_any:
            bad_out = self._bad_outputs(bad, np.arange(offset, n, q), n)
        xt = raw  # filtered in place
        if self._fresh:
            self._pre.reset(xt[:, 0])
            self._env.reset()
            self._fresh = False
        filter_inplace(self._pre_sos, xt, self._pre.state)
        np.abs(xt, out=xt)
        filter_inplace(self._env_sos, xt, self._env.state)
        if offset >= n:
            return ConditionerOutput(self._no_output, first_output, q, self._report(events))
        y = self._scale.apply(xt[:, offset::q].T.copy())  # (n_out, channels)
        if self._clip:
            np.minimum(y, self._ones, out=y)
            np.maximum(y, self._zeros, out=y)
        if bad_out is not None and bad_out.any():
            self._apply_bad_policy(y, bad_out)
        self._last_output = y[-1].copy()
        return ConditionerOutput(y, first_output, q, self._report(events))

    def _report(self, events: dict) -> ChunkReport:
        """The chunk's report; chunks with nothing to report share one per quality state."""
        quality = self._quality
        clean = self._clean_report
        if events or clean.flat is not quality.flat_names \
                or clean.saturated is not quality.saturated_names:
            report = ChunkReport(**events, flat=quality.flat_names,
                                 saturated=quality.saturated_names)
            if not events:
                self._clean_report = report
            return report
        return clean


def condition_offline(emg: np.ndarray, sample_rate: float, channel_names: list[str],
                      settings: ConditioningSettings, calibration: Calibration | None = None,
                      *, unnormalised: bool = False) -> ConditionerOutput:
    """Condition a whole recording (n, channels; V) with the streaming code, in one chunk.

    Output ``j`` is at raw sample ``(j + 1)·decimation − 1``: ``floor(n / decimation)`` outputs.
    """
    return Conditioner(settings, sample_rate, channel_names, calibration,
                       unnormalised=unnormalised).process(emg, 0)


def condition_recording(recording: Recording, settings: ConditioningSettings,
                        calibration: Calibration | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Excitation (n_out, channels) of a recording and the time (s) of each output sample.

    The time is the recording's clock (``start_time`` + raw index / sample rate).
    """
    out = condition_offline(recording.emg, recording.sample_rate, recording.channel_names,
                            settings, calibration)
    time = recording.start_time + out.raw_index / recording.sample_rate
    return out.excitation, time
