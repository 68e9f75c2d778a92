"""Streaming equals offline for any chunking; the chain is causal; outputs are timed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emg_msk_ros.io.recording import Recording
from emg_msk_ros.signal import (
    Conditioner,
    ConditioningSettings,
    compute_calibration,
    condition_offline,
    condition_recording,
)
from emg_msk_ros.signal.config import BadSampleSettings, NormalisationSettings
from emg_msk_ros.signal.synthetic import modulated_noise

pytestmark = pytest.mark.kernels  # float results: run on a second kernel family too

NAMES = ["RF", "BF", "VM"]


def _with_bad_samples(emg: np.ndarray, seed: int) -> np.ndarray:
    """A copy with NaN, Inf and out-of-range bursts at random places."""
    rng = np.random.default_rng(seed)
    emg = emg.copy()
    for value in (np.nan, np.inf, -np.inf, 5.0):
        start = rng.integers(0, emg.shape[0] - 40)
        emg[start:start + rng.integers(1, 40), rng.integers(0, emg.shape[1])] = value
    return emg


def _stream(conditioner: Conditioner, emg: np.ndarray, sizes: list[int]):
    """Feed ``emg`` in chunks cycling through ``sizes``; return stacked outputs and indices."""
    outputs, indices, start, k = [], [], 0, 0
    while start < emg.shape[0]:
        size = sizes[k % len(sizes)]
        out = conditioner.process(emg[start:start + size], start)
        outputs.append(out.excitation)
        indices.append(out.raw_index)
        start += size
        k += 1
    return np.concatenate(outputs), np.concatenate(indices)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 173), min_size=1, max_size=30),
    rates=st.sampled_from([(1000.0, 100.0), (2000.0, 100.0), (1000.0, 50.0), (1000.0, 1000.0)]),
    mode=st.sampled_from(["calibration", "running", "unnormalised"]),
    bad_output=st.sampled_from(["hold", "zero"]),
    seed=st.integers(0, 2**16),
)
def test_streaming_equals_offline_for_any_chunking(sizes, rates, mode, bad_output, seed):
    fs, out_rate = rates
    base = ConditioningSettings()
    config = base.replace(
        output_rate_hz=out_rate,
        normalisation=NormalisationSettings(mode="running" if mode == "running" else
                                            "calibration"),
        bad_samples=BadSampleSettings(output=bad_output),
    )
    emg, _ = modulated_noise(1.5, fs, len(NAMES), seed)
    calibration = compute_calibration(emg, fs, NAMES, config)
    emg = _with_bad_samples(emg, seed)
    kwargs = {"unnormalised": mode == "unnormalised"}
    offline = condition_offline(emg, fs, NAMES, config, calibration, **kwargs)
    streamed, raw_index = _stream(Conditioner(config, fs, NAMES, calibration, **kwargs), emg,
                                  sizes)
    assert streamed.shape == offline.excitation.shape
    assert np.max(np.abs(streamed - offline.excitation)) <= 1e-9
    np.testing.assert_array_equal(raw_index, offline.raw_index)
    assert np.all(np.isfinite(streamed))


def test_chain_is_causal():
    """Changing raw samples from index m on leaves every output before m unchanged."""
    config = ConditioningSettings().replace(normalisation=NormalisationSettings(mode="running"))
    emg, _ = modulated_noise(2.0, 1000.0, 3, seed=3)
    m = 1234
    changed = emg.copy()
    changed[m:] = 10 * emg[m:][::-1]
    a = condition_offline(emg, 1000.0, NAMES, config)
    b = condition_offline(changed, 1000.0, NAMES, config)
    before = a.raw_index < m
    np.testing.assert_array_equal(a.excitation[before], b.excitation[before])
    assert not np.allclose(a.excitation[~before], b.excitation[~before])


def test_output_timing_and_count():
    config = ConditioningSettings().replace(normalisation=NormalisationSettings(mode="running"))
    emg, _ = modulated_noise(1.003, 2000.0, 3, seed=1)  # 2006 samples
    recording = Recording(emg=emg, sample_rate=2000.0, channel_names=NAMES, start_time=12.5)
    excitation, time = condition_recording(recording, config)
    assert excitation.shape == (100, 3)  # floor(2006 / 20): outputs at raw 19, 39, ..., 1999
    np.testing.assert_allclose(time, 12.5 + (19 + 20 * np.arange(100)) / 2000.0)


def test_envelope_follows_the_true_activation():
    config = ConditioningSettings()
    emg, activation = modulated_noise(8.0, 1000.0, 3, seed=5)
    calibration = compute_calibration(emg, 1000.0, NAMES, config)
    out = condition_offline(emg, 1000.0, NAMES, config, calibration)
    truth = activation[out.raw_index]
    for c in range(3):
        assert np.corrcoef(out.excitation[:, c], truth[:, c])[0, 1] > 0.9
    assert out.excitation.min() >= 0.0 and out.excitation.max() <= 1.0


def test_stream_starting_late_is_aligned_to_absolute_indices():
    config = ConditioningSettings().replace(normalisation=NormalisationSettings(mode="running"))
    emg, _ = modulated_noise(0.5, 1000.0, 3, seed=2)
    out = Conditioner(config, 1000.0, NAMES).process(emg, first_sample_index=1003)
    assert out.first_output_index == 100  # raw index 1009, the first block end (10·k + 9)
    assert out.raw_index[0] == out.first_raw_index == 1009


@pytest.mark.parametrize("chunk", [1, 7, 20])
def test_first_chunk_with_dc_offset_gives_no_start_transient(chunk):
    """The band-pass starts in steady state for the first sample, so an electrode offset of
    10 mV does not ring into the envelope."""
    config = ConditioningSettings().replace(normalisation=NormalisationSettings(mode="running"))
    emg = np.full((500, 3), 0.01)
    conditioner = Conditioner(config, 1000.0, NAMES, unnormalised=True)
    out, _ = _stream(conditioner, emg, [chunk])
    assert np.max(np.abs(out)) < 1e-12
