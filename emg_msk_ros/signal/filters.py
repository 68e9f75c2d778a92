"""Filter design (scipy, second-order sections) and a stateful multi-channel SOS cascade.

Coefficients are designed once per sample rate; :class:`SosCascade` carries each channel's
state between chunks, so filtering a signal in pieces gives exactly the samples of filtering it
whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal

from emg_msk_ros.signal.config import (
    BandpassSettings,
    ConditioningSettings,
    ConfigError,
    EnvelopeSettings,
)

# The band-pass top is clipped to this fraction of Nyquist (fs/2): 450 Hz at 1 kHz stays 450 Hz.
NYQUIST_FRACTION = 0.9


def _public_kernel(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> None:
    """Filter ``x`` (channels, samples) in place, updating ``zi`` (channels, sections, 2)."""
    y, zf = signal.sosfilt(sos, x, axis=-1, zi=np.moveaxis(zi, 0, 1))
    x[...] = y
    zi[...] = np.moveaxis(zf, 1, 0)


def _select_kernel():
    """scipy's compiled SOS loop without its per-call validation, if present and correct.

    ``scipy.signal.sosfilt`` spends ~100 µs per call checking and reshaping its arguments, which
    dominates 10-sample chunks; the compiled routine it wraps takes ~2 µs, and its float64
    specialisation ~1 µs less (no dispatch on the argument types). The routine is private, so it
    is used only after it reproduces ``sosfilt`` here; otherwise the public call is used.
    """
    try:
        from scipy.signal._sosfilt import _sosfilt
    except ImportError:
        return _public_kernel
    _sosfilt = getattr(_sosfilt, "__signatures__", {}).get("double", _sosfilt)
    rng = np.random.default_rng(0)
    sos = signal.butter(2, [0.1, 0.4], "bandpass", output="sos")
    x = rng.standard_normal((2, 16))
    zi = rng.standard_normal((2, sos.shape[0], 2))
    x_fast, zi_fast = x.copy(), zi.copy()
    x_ref, zi_ref = x.copy(), zi.copy()
    try:
        _sosfilt(sos, x_fast, zi_fast)
    except Exception:  # noqa: BLE001 - any failure of a private routine means "do not use it"
        return _public_kernel
    _public_kernel(sos, x_ref, zi_ref)
    if np.array_equal(x_fast, x_ref) and np.array_equal(zi_fast, zi_ref):
        return _sosfilt
    return _public_kernel


filter_inplace = _select_kernel()
"""``filter_inplace(sos, x, state)``: filter ``x`` (channels, samples; float64, C-contiguous,
at least one sample) in place through ``sos`` (sections, 6), updating ``state`` (channels,
sections, 2)."""


class SosCascade:
    """A cascade of second-order sections for every channel, and its carried state."""

    def __init__(self, sos: np.ndarray, n_channels: int) -> None:
        self.sos = np.ascontiguousarray(sos, dtype=np.float64)
        self._step_state = signal.sosfilt_zi(self.sos)  # (sections, 2) for a unit step
        self.state = np.zeros((n_channels, self.sos.shape[0], 2))

    def reset(self, steady_input: np.ndarray | None = None) -> None:
        """Zero the state, or set it to the steady state for a constant input per channel."""
        if steady_input is None:
            self.state[...] = 0.0
        else:
            self.state[...] = self._step_state[None, :, :] * steady_input[:, None, None]


@dataclass(frozen=True)
class FilterDesign:
    """The coefficients of the conditioning chain for one raw sample rate."""

    sample_rate: float  # Hz, raw
    bandpass_hz: tuple[float, float]  # after clipping below Nyquist
    notch_hz: tuple[float, ...]  # notch centres actually used
    pre_sos: np.ndarray  # band-pass then notches, (sections, 6)
    envelope_sos: np.ndarray  # low-pass on the rectified signal, (sections, 6)
    decimation: int  # raw samples per output sample
    output_rate: float  # Hz


def _bandpass(settings: BandpassSettings, fs: float) -> tuple[tuple[float, float], np.ndarray]:
    high = min(settings.high_hz, NYQUIST_FRACTION * fs / 2)
    if settings.low_hz >= high:
        raise ConfigError(
            f"{settings.SECTION}.low_hz ({settings.low_hz} Hz) must be below the high cut-off, "
            f"which is {high:g} Hz at a sample rate of {fs:g} Hz "
            f"({NYQUIST_FRACTION:g} of Nyquist)"
        )
    sos = signal.butter(settings.order, [settings.low_hz, high], "bandpass", fs=fs, output="sos")
    return (settings.low_hz, high), sos


def _envelope(settings: EnvelopeSettings, fs: float) -> np.ndarray:
    return signal.butter(settings.order, settings.cutoff_hz, "lowpass", fs=fs, output="sos")


def decimation_factor(sample_rate: float, output_rate: float) -> int:
    """Raw samples per output sample; ``sample_rate / output_rate`` must be a whole number."""
    factor = sample_rate / output_rate
    q = round(factor)
    if factor < 1:
        raise ConfigError(
            f"conditioning.output_rate_hz ({output_rate:g} Hz) must not exceed the sample rate "
            f"({sample_rate:g} Hz)"
        )
    if abs(factor - q) > 1e-9 * factor:
        raise ConfigError(
            f"conditioning.output_rate_hz ({output_rate:g} Hz) must divide the sample rate "
            f"({sample_rate:g} Hz) exactly, but the factor is {factor:.6g}; e.g. "
            f"{sample_rate / math.ceil(factor):g} Hz would"
        )
    return q


def design_filters(settings: ConditioningSettings, sample_rate: float) -> FilterDesign:
    """Design the chain's filters for ``sample_rate`` (Hz); errors name the offending option."""
    if not (np.isfinite(sample_rate) and sample_rate > 0):
        raise ConfigError(f"sample_rate must be a positive number of Hz, got {sample_rate!r}")
    fs = float(sample_rate)
    q = decimation_factor(fs, settings.output_rate_hz)
    band, bandpass_sos = _bandpass(settings.bandpass, fs)
    notches: list[float] = []
    sections = [bandpass_sos]
    if settings.notch.frequency_hz is not None:
        for k in range(1, settings.notch.harmonics + 1):
            centre = k * settings.notch.frequency_hz
            if centre >= band[1]:
                break
            b, a = signal.iirnotch(centre, settings.notch.quality, fs=fs)
            sections.append(signal.tf2sos(b, a))
            notches.append(centre)
    return FilterDesign(
        sample_rate=fs,
        bandpass_hz=band,
        notch_hz=tuple(notches),
        pre_sos=np.vstack(sections),
        envelope_sos=_envelope(settings.envelope, fs),
        decimation=q,
        output_rate=fs / q,
    )
