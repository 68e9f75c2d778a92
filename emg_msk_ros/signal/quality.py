"""Flat-line and saturation detection on raw EMG, window by window, across chunks.

Windows are consecutive blocks of ``window_s`` seconds counted from the start of the stream (or
from the last reset), so the flags do not depend on how the stream was chunked. A channel's
flags are those of its latest complete window.
"""

from __future__ import annotations

import numpy as np

from emg_msk_ros.signal.config import QualitySettings


def longest_run(mask: np.ndarray, values: np.ndarray) -> int:
    """Longest run of consecutive samples where ``mask`` holds and the value does not change."""
    repeat = mask[1:] & mask[:-1] & (values[1:] == values[:-1])
    count = np.cumsum(repeat)
    restart = np.maximum.accumulate(np.where(repeat, 0, count))
    return int((count - restart).max(initial=0)) + 1


def window_flags(window: np.ndarray, settings: QualitySettings,
                 run_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat, saturated) booleans per channel for one window (channels, samples) of volts.

    Saturated means a sample reached ``saturation_v``, or the window's largest |value| was
    held for ``run_samples`` in a row. An amplifier driven into its rail (movement artefact,
    lost reference) sits there for many samples; real EMG rarely repeats its extreme value (in
    16,000 windows of 0.25 s of the UCI lower-limb recordings, a run of 9 samples at 1 kHz
    occurred once, 5-8 never). EMG peaks clipped for only a few ms are found only through a
    known ``saturation_v``.
    """
    high, low = window.max(axis=1), window.min(axis=1)
    flat = high - low <= settings.flat_ptp_v
    peak = np.maximum(high, -low)
    saturated = np.zeros_like(flat)
    if settings.saturation_v is not None:
        saturated |= peak >= settings.saturation_v
    at_peak = np.abs(window) >= peak[:, None]
    for c in np.flatnonzero((at_peak.sum(axis=1) >= run_samples) & ~flat & ~saturated):
        saturated[c] = longest_run(at_peak[c], window[c]) >= run_samples
    return flat, saturated


class QualityMonitor:
    """Carries a partial window between chunks and flags flat or saturated channels."""

    def __init__(self, settings: QualitySettings, sample_rate: float,
                 channel_names: list[str]) -> None:
        self.settings = settings
        self.channel_names = list(channel_names)
        self.window = max(2, round(settings.window_s * sample_rate))
        self.run_samples = max(2, round(settings.saturation_run_s * sample_rate))
        n = len(self.channel_names)
        self.flat = np.zeros(n, dtype=bool)
        self.saturated = np.zeros(n, dtype=bool)
        self.flat_windows = np.zeros(n, dtype=np.int64)  # windows flagged since reset
        self.saturated_windows = np.zeros(n, dtype=np.int64)
        self.windows = 0  # complete windows since reset
        self.reset()

    def reset(self) -> None:
        """Forget the partial window, the flags and the counts."""
        self.restart()
        self.flat[:] = False
        self.saturated[:] = False
        self.flat_windows[:] = 0
        self.saturated_windows[:] = 0
        self.windows = 0
        self.flat_names: tuple[str, ...] = ()
        self.saturated_names: tuple[str, ...] = ()

    def restart(self) -> None:
        """Forget the partial window only (the stream jumped): the flags and counts stand until
        the next whole window is judged, so a dead channel stays flagged across the jump."""
        self._buffer = np.empty((len(self.channel_names), self.window))  # the partial window
        self._filled = 0

    def _evaluate(self, window: np.ndarray) -> None:
        flat, saturated = window_flags(window, self.settings, self.run_samples)
        self.windows += 1
        self.flat_windows += flat
        self.saturated_windows += saturated
        if not (np.array_equal(flat, self.flat) and np.array_equal(saturated, self.saturated)):
            self.flat[:] = flat
            self.saturated[:] = saturated
            self.flat_names = tuple(n for n, f in zip(self.channel_names, flat) if f)
            self.saturated_names = tuple(n for n, s in zip(self.channel_names, saturated) if s)

    def update(self, x: np.ndarray) -> None:
        """Take the next raw samples ``x`` (channels, samples; V); ``x`` is copied."""
        n, filled, window = x.shape[1], self._filled, self.window
        if filled + n < window:  # the usual streaming case
            self._buffer[:, filled:filled + n] = x
            self._filled = filled + n
            return
        used = window - filled
        self._buffer[:, filled:] = x[:, :used]
        self._evaluate(self._buffer)
        while n - used >= window:  # whole windows inside x
            self._evaluate(x[:, used:used + window])
            used += window
        self._filled = n - used
        self._buffer[:, :self._filled] = x[:, used:]

    def summary(self) -> list[str]:
        """One line per channel that had flat or saturated windows since the last reset."""
        lines = []
        for name, flat, saturated in zip(self.channel_names, self.flat_windows,
                                         self.saturated_windows):
            if flat:
                lines.append(f"channel {name}: flat in {flat} of {self.windows} windows")
            if saturated:
                lines.append(f"channel {name}: saturated in {saturated} of {self.windows} windows")
        return lines
