"""Bad input: NaN/Inf, gaps and repeats, flat lines, clipping, format changes mid-stream."""

from __future__ import annotations

import numpy as np
import pytest

from emg_msk_ros.signal import Conditioner, ConditioningSettings, StreamFormatError
from emg_msk_ros.signal.config import (
    BadSampleSettings,
    GapSettings,
    NormalisationSettings,
    QualitySettings,
)
from emg_msk_ros.signal.synthetic import modulated_noise

pytestmark = pytest.mark.kernels  # float results: run on a second kernel family too

FS = 1000.0
NAMES = ["RF", "BF", "VM"]
RUNNING = ConditioningSettings().replace(normalisation=NormalisationSettings(mode="running"))


def _feed(conditioner: Conditioner, emg: np.ndarray, size: int = 10, start: int = 0):
    """Outputs (n_out, C) and reports of feeding ``emg`` in chunks of ``size``."""
    outputs, reports = [], []
    for i in range(0, emg.shape[0], size):
        out = conditioner.process(emg[i:i + size], start + i)
        outputs.append(out.excitation)
        reports.append(out.report)
    return np.concatenate(outputs), reports


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 3.0])
@pytest.mark.parametrize("policy", ["hold", "zero"])
def test_invalid_samples_never_reach_the_filters(value, policy):
    config = RUNNING.replace(bad_samples=BadSampleSettings(output=policy))
    emg, _ = modulated_noise(2.0, FS, 3, seed=4)
    clean, _ = _feed(Conditioner(config, FS, NAMES), emg)
    bad = emg.copy()
    bad[700:750, 1] = value  # 50 samples of channel BF
    conditioner = Conditioner(config, FS, NAMES)
    out, reports = _feed(conditioner, bad)

    assert sum(r.invalid.get("BF", 0) for r in reports) == 50
    assert all(set(r.invalid) <= {"BF"} for r in reports)
    assert all(np.isfinite(c.state).all() for c in (conditioner._pre, conditioner._env))
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    # other channels are untouched
    np.testing.assert_array_equal(out[:, [0, 2]], clean[:, [0, 2]])
    # outputs 70..74 (at raw 709..749) had a bad sample in their block (previous output, this one]
    affected = np.arange(70, 75)
    if policy == "zero":
        assert np.all(out[affected, 1] == 0.0)
    else:
        assert np.all(out[affected, 1] == out[69, 1])
    assert not np.array_equal(out[affected, 1], clean[affected, 1])
    # afterwards the channel recovers toward the clean result
    assert abs(out[-1, 1] - clean[-1, 1]) < 0.05


def test_a_chunk_completing_no_output_is_checked_with_the_next_one():
    """With 10 samples per output, a 5-sample chunk that completes none is stored; its invalid
    samples are counted in the report of the chunk that completes the output, or before a gap."""
    emg, _ = modulated_noise(0.1, FS, 3, seed=8)
    emg[2, 0] = np.nan
    conditioner = Conditioner(RUNNING, FS, NAMES)
    stored = conditioner.process(emg[:5], 0)
    assert stored.excitation.shape == (0, 3) and stored.report.ok
    assert conditioner.next_sample_index == 5
    completed = conditioner.process(emg[5:10], 5)
    assert completed.excitation.shape == (1, 3) and completed.report.invalid == {"RF": 1}

    emg[12, 1] = np.nan
    chunk = emg[10:15].copy()
    assert conditioner.process(chunk, 10).report.ok  # stored
    chunk[:] = 0.0  # the caller reuses its buffer: the conditioner kept a copy
    after_gap = conditioner.process(emg[20:25], 20)  # the stored chunk is checked first
    assert after_gap.report.gap == 5 and after_gap.report.invalid == {"BF": 1}


def test_leading_nan_on_a_fresh_stream_is_defined():
    emg, _ = modulated_noise(1.0, FS, 3, seed=1)
    emg[:25, 0] = np.nan
    out, reports = _feed(Conditioner(RUNNING, FS, NAMES), emg)
    assert reports[0].invalid == {"RF": 10}
    assert np.isfinite(out).all()
    assert np.all(out[:3, 0] == 0.0)  # no earlier output to hold: zero


def test_short_gap_is_bridged_by_holding_the_last_sample():
    emg, _ = modulated_noise(1.0, FS, 3, seed=2)
    first, second = emg[:400], emg[430:]
    bridged = Conditioner(RUNNING, FS, NAMES)
    bridged.process(first, 0)
    out = bridged.process(second, 430)
    assert out.report.gap == 30 and out.report.bridged == 30 and not out.report.reset

    explicit = Conditioner(RUNNING, FS, NAMES)
    explicit.process(first, 0)
    held = explicit.process(np.repeat(first[-1:], 30, axis=0), 400)
    rest = explicit.process(second, 430)
    np.testing.assert_array_equal(out.excitation,
                                  np.concatenate([held.excitation, rest.excitation]))
    assert out.first_output_index == 40


@pytest.mark.parametrize("policy, gap", [("bridge", 500), ("reset", 5)])
def test_long_gap_or_reset_policy_restarts_the_filters(policy, gap):
    config = ConditioningSettings().replace(
        normalisation=NormalisationSettings(mode="running"), gaps=GapSettings(policy=policy))
    emg, _ = modulated_noise(1.0, FS, 3, seed=3)
    conditioner = Conditioner(config, FS, NAMES, unnormalised=True)
    conditioner.process(emg[:400], 0)
    out = conditioner.process(emg[400:], 400 + gap)
    assert out.report.gap == gap and out.report.reset and out.report.bridged == 0
    assert "reset filters" in " ".join(out.report.messages())
    fresh = Conditioner(config, FS, NAMES, unnormalised=True).process(emg[400:], 400 + gap)
    np.testing.assert_array_equal(out.excitation, fresh.excitation)
    assert conditioner.next_sample_index == 1000 + gap


def test_repeated_samples_are_dropped():
    emg, _ = modulated_noise(1.0, FS, 3, seed=6)
    reference = Conditioner(RUNNING, FS, NAMES)
    expected = np.concatenate([reference.process(emg[:500], 0).excitation,
                               reference.process(emg[500:], 500).excitation])
    conditioner = Conditioner(RUNNING, FS, NAMES)
    a = conditioner.process(emg[:500], 0)
    b = conditioner.process(emg[495:], 495)  # 5 samples sent again
    assert b.report.repeated == 5
    np.testing.assert_array_equal(np.concatenate([a.excitation, b.excitation]), expected)
    again = conditioner.process(emg[900:950], 900)  # a whole chunk already seen
    assert again.report.repeated == 50 and again.excitation.shape == (0, 3)


def test_large_backward_jump_is_a_restart():
    emg, _ = modulated_noise(1.0, FS, 3, seed=7)
    conditioner = Conditioner(RUNNING, FS, NAMES)
    conditioner.process(emg, 0)
    out = conditioner.process(emg[:100], 0)
    assert out.report.reset and out.report.repeated == 0
    assert out.first_output_index == 0 and out.excitation.shape == (10, 3)


def test_format_changes_mid_stream_are_errors():
    conditioner = Conditioner(RUNNING, FS, NAMES)
    chunk = np.zeros((10, 3))
    conditioner.process(chunk, 0, sample_rate=FS, channel_names=NAMES)
    with pytest.raises(StreamFormatError, match="sample_rate changed mid-stream: 2000 Hz"):
        conditioner.process(chunk, 10, sample_rate=2000.0)
    with pytest.raises(StreamFormatError, match="channel_names changed"):
        conditioner.process(chunk, 10, channel_names=["RF", "VM", "BF"])
    with pytest.raises(StreamFormatError, match=r"shape \(samples, 3\)"):
        conditioner.process(np.zeros((10, 4)), 10)


def test_flat_channel_is_reported():
    emg, _ = modulated_noise(1.0, FS, 3, seed=8)
    emg[:, 2] = 0.003  # VM: electrode off, amplifier holds a constant
    conditioner = Conditioner(RUNNING, FS, NAMES)
    out, reports = _feed(conditioner, emg)
    assert reports[0].flat == ()  # nothing known before a full window
    assert reports[-1].flat == ("VM",) and reports[-1].saturated == ()
    assert "channel VM: flat line" in reports[-1].messages()
    # no excitation from the flat channel: the band-pass removes the constant up to the
    # rounding of its float64 arithmetic (~1e-15 of full excitation, CPU-dependent)
    assert np.max(np.abs(out[:, 2])) < 1e-9


def test_clipped_channel_is_reported():
    """A movement artefact drives RF into the amplifier's rail: the plateau rule finds it; the
    EMG peaks clipped at a known input range are found by saturation_v."""
    emg, _ = modulated_noise(1.0, FS, 3, seed=9)
    rail = 2e-3
    t = np.arange(emg.shape[0]) / FS
    emg[:, 0] = np.clip(emg[:, 0] + 5e-3 * np.sin(2 * np.pi * 2.0 * t), -rail, rail)
    _, reports = _feed(Conditioner(RUNNING, FS, NAMES), emg)
    assert reports[-1].saturated == ("RF",) and reports[-1].flat == ()
    assert "channel RF: saturated (clipped)" in reports[-1].messages()

    emg, _ = modulated_noise(1.0, FS, 3, seed=9, offset_v=0.0)
    emg[:, [0, 2]] *= 0.2  # within range
    rail = 0.5 * np.abs(emg[:, 1]).max()
    emg[:, 1] = np.clip(emg[:, 1], -rail, rail)
    limit = RUNNING.replace(quality=QualitySettings(saturation_v=rail))
    _, reports = _feed(Conditioner(limit, FS, NAMES), emg)
    assert reports[-1].saturated == ("BF",)


def test_noise_alone_is_neither_flat_nor_saturated():
    emg, _ = modulated_noise(3.0, FS, 3, seed=10)
    conditioner = Conditioner(RUNNING, FS, NAMES)
    _feed(conditioner, emg)
    assert conditioner.quality.windows == 12
    assert conditioner.quality.summary() == []
