"""Synthetic raw EMG with a known activation profile, for tests and benchmarks."""

from __future__ import annotations

import numpy as np


def modulated_noise(duration_s: float, sample_rate: float, n_channels: int, seed: int = 0, *,
                    amplitude_v: float = 1e-4, burst_hz: float = 0.5, offset_v: float = 1e-3,
                    mains_hz: float = 50.0, mains_v: float = 2e-5
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(emg, activation), both (n, channels): raw EMG in V and its true amplitude profile 0..1.

    Each channel is Gaussian noise (surface EMG is well modelled as amplitude-modulated noise)
    times a slow raised-sine activation at ``burst_hz`` with its own phase, plus a DC electrode
    offset and mains hum, as an amplifier would deliver it.
    """
    rng = np.random.default_rng(seed)
    n = round(duration_s * sample_rate)
    t = np.arange(n)[:, None] / sample_rate
    phase = np.linspace(0.0, np.pi, n_channels, endpoint=False)[None, :]
    activation = 0.5 * (1.0 - np.cos(2 * np.pi * burst_hz * t + phase))
    noise = rng.standard_normal((n, n_channels))
    emg = amplitude_v * (0.05 + activation) * noise
    emg += offset_v * rng.uniform(-1.0, 1.0, n_channels)[None, :]
    emg += mains_v * np.sin(2 * np.pi * mains_hz * t)
    return emg, activation
