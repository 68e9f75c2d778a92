"""Raw surface EMG synthesised from muscle excitations (volts).

Each channel is band-limited Gaussian noise (Butterworth band-pass, 20-450 Hz by default,
unit RMS) whose amplitude follows its muscle's excitation: s_c(t) = g_c·e_c(t)·n_c(t), with
g_c the channel's RMS at full excitation (drawn per channel, 0.1-1 mV). On top:

- cross-talk: each channel picks up a fraction (up to ``crosstalk``, drawn per pair) of the
  other muscles' activity, at its own electrode gain;
- sensor noise: white, at the amplifier;
- powerline interference: 50 Hz (or 60 Hz) and its third harmonic, random phase per channel;
- baseline drift: a slow random wander (< 0.5 Hz);
- motion artefacts: low-frequency (1-15 Hz) bursts whose size follows |joint acceleration|.

Deterministic for a given numpy Generator state. :func:`draw_sources` draws the random parts
alone; :meth:`EmgSources.compose` applies excitations to them, a stretch at a time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import signal


@dataclass(frozen=True)
class EmgSynthSettings:
    """EMG generator settings; voltages in V (RMS unless stated), frequencies in Hz."""

    sample_rate: float = 2000.0
    band: tuple[float, float] = (20.0, 450.0)
    gain_range: tuple[float, float] = (1e-4, 1e-3)  # RMS at full excitation, per channel
    crosstalk: float = 0.1  # largest fraction of another muscle's activity picked up
    sensor_noise: float = 5e-6
    powerline: float = 1e-5  # amplitude of the fundamental (third harmonic: 30 % of it)
    powerline_frequency: float = 50.0
    drift: float = 2e-5  # RMS of the baseline wander
    motion_artifact: float = 5e-5  # RMS of the artefact at the trial's largest acceleration

    def __post_init__(self) -> None:
        low, high = self.band
        nyquist = self.sample_rate / 2
        if not 0 < low < high < nyquist:
            raise ValueError(f"EMG band {self.band} Hz must satisfy 0 < low < high < "
                             f"{nyquist:g} Hz (half the sample rate)")
        lo_gain, hi_gain = self.gain_range
        if not 0 < lo_gain <= hi_gain:
            raise ValueError(f"gain_range must be 0 < low <= high, got {self.gain_range}")
        for name in ("crosstalk", "sensor_noise", "powerline", "drift", "motion_artifact"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def as_dict(self) -> dict:
        """Plain-type dictionary (for session metadata)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _band_noise(rng: np.random.Generator, n: int, channels: int, band, fs: float,
                order: int = 4) -> np.ndarray:
    """Unit-RMS Gaussian noise, shape (n, channels), band-passed to ``band`` = (low, high) Hz,
    or low-passed below ``band`` Hz when it is a single number."""
    passband = "bandpass" if np.ndim(band) else "lowpass"
    sos = signal.butter(order, band, btype=passband, fs=fs, output="sos")
    settle = int(2 * fs / np.min(band))  # discard the filter's start-up transient
    noise = signal.sosfilt(sos, rng.standard_normal((n + settle, channels)), axis=0)[settle:]
    return noise / noise.std(axis=0)


def _resample(time_from: np.ndarray, values: np.ndarray, time_to: np.ndarray) -> np.ndarray:
    """Linear interpolation of each column of ``values`` (len(time_from), C) onto time_to."""
    return np.stack([np.interp(time_to, time_from, values[:, c])
                     for c in range(values.shape[1])], axis=1)


@dataclass
class EmgSources:
    """The random parts of a stretch of synthetic EMG, drawn before the excitations are known
    (so a closed-loop simulation can draw them first and apply its excitations as they come).
    Arrays are (n, C) at ``settings.sample_rate`` in V, except ``carrier`` (unit RMS, scaled
    by the excitation and the gains) and ``burst`` (unit RMS, scaled by the artefact level)."""

    settings: EmgSynthSettings
    gains: np.ndarray  # (C,) V RMS at full excitation
    carrier: np.ndarray  # band-limited noise per muscle source
    mixing: np.ndarray  # (C, C) cross-talk: channel c picks up mixing[c, j] of source j
    sensor: np.ndarray
    powerline: np.ndarray
    drift: np.ndarray
    burst: np.ndarray | None  # motion-artefact noise, None without artefacts

    def compose(self, envelope: np.ndarray, level: np.ndarray | None,
                start: int = 0) -> np.ndarray:
        """Raw EMG (n, C) in V for samples ``start .. start + n`` of the sources: ``envelope``
        (n, C) excitation 0..1 per muscle at the EMG rate, ``level`` (n,) artefact level 0..1
        (None: no artefact)."""
        rows = slice(start, start + envelope.shape[0])
        emg = self.gains * ((envelope * self.carrier[rows]) @ self.mixing.T)
        emg += self.sensor[rows]
        emg += self.powerline[rows]
        emg += self.drift[rows]
        if level is not None and self.burst is not None:
            emg += self.settings.motion_artifact * level[:, None] * self.burst[rows]
        return emg


def electrode_gains(rng: np.random.Generator, channels: int,
                    settings: EmgSynthSettings) -> np.ndarray:
    """Each channel's RMS at full excitation (V), log-uniform in ``settings.gain_range``."""
    return np.exp(rng.uniform(*np.log(settings.gain_range), size=channels))


def draw_sources(rng: np.random.Generator, n: int, channels: int, start_time: float = 0.0,
                 settings: EmgSynthSettings | None = None,
                 artifacts: bool = True) -> EmgSources:
    """The random parts of ``n`` samples of ``channels`` channels starting at ``start_time``
    s; ``artifacts`` False draws no motion-artefact noise."""
    settings = settings or EmgSynthSettings()
    fs = settings.sample_rate
    t = start_time + np.arange(n) / fs
    gains = electrode_gains(rng, channels, settings)
    carrier = _band_noise(rng, n, channels, settings.band, fs)
    mixing = np.eye(channels) + rng.uniform(0.0, settings.crosstalk, (channels, channels)) * (
        1.0 - np.eye(channels))
    sensor = settings.sensor_noise * rng.standard_normal((n, channels))
    phase = rng.uniform(0.0, 2 * np.pi, (2, channels))
    f_line = settings.powerline_frequency
    powerline = settings.powerline * (np.sin(2 * np.pi * f_line * t[:, None] + phase[0])
                                      + 0.3 * np.sin(2 * np.pi * 3 * f_line * t[:, None]
                                                     + phase[1]))
    drift_rate = 50.0  # Hz: the wander is made at a low rate, then interpolated
    k = max(int(n / fs * drift_rate), 2)
    slow = _band_noise(rng, k, channels, 0.5, drift_rate, order=2)
    drift = settings.drift * _resample(start_time + np.arange(k) / drift_rate, slow, t)
    burst = None
    if artifacts and settings.motion_artifact > 0:
        burst = _band_noise(rng, n, channels, (1.0, 15.0), fs, order=2)
    return EmgSources(settings, gains, carrier, mixing, sensor, powerline, drift, burst)


def synthesize_emg(rng: np.random.Generator, kin_time: np.ndarray, excitation: np.ndarray,
                   acceleration: np.ndarray | None = None,
                   settings: EmgSynthSettings | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Raw EMG (n, C) in volts at ``settings.sample_rate`` covering ``kin_time``.

    ``excitation`` (m, C) in 0..1 is sampled on ``kin_time`` (s); ``acceleration`` (m,) rad/s^2
    drives the motion artefacts (their level is |acceleration| over its largest value).
    Returns (emg, per-channel gains g_c in V).
    """
    settings = settings or EmgSynthSettings()
    fs = settings.sample_rate
    m, channels = excitation.shape
    duration = kin_time[-1] - kin_time[0] + (kin_time[1] - kin_time[0] if m > 1 else 0.0)
    n = int(round(duration * fs))
    t = kin_time[0] + np.arange(n) / fs
    envelope = np.clip(_resample(kin_time, excitation, t), 0.0, 1.0)
    sources = draw_sources(rng, n, channels, kin_time[0], settings, acceleration is not None)
    level = None
    if acceleration is not None:
        level = np.abs(np.interp(t, kin_time, acceleration))
        level /= max(level.max(), 1e-12)
    return sources.compose(envelope, level), sources.gains
