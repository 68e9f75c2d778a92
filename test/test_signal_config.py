"""Conditioning settings: YAML defaults, validation messages, filter design limits."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from emg_msk_ros.paths import config_path
from emg_msk_ros.signal import ConditioningSettings, ConfigError, load_settings
from emg_msk_ros.signal.config import NotchSettings
from emg_msk_ros.signal.filters import design_filters


def test_shipped_yaml_equals_the_documented_defaults():
    assert load_settings(config_path("conditioning.yaml")) == ConditioningSettings()
    assert load_settings() == ConditioningSettings()


def test_mapping_round_trip_and_partial_mapping():
    settings = ConditioningSettings.from_mapping(
        {"notch": {"frequency_hz": 60, "harmonics": 3}, "output_rate_hz": 50})
    assert settings.notch == NotchSettings(frequency_hz=60.0, harmonics=3)
    assert settings.bandpass == ConditioningSettings().bandpass
    assert ConditioningSettings.from_mapping(settings.to_mapping()) == settings


def test_file_with_top_level_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("conditioning:\n  envelope: {cutoff_hz: 4.0}\n")
    assert load_settings(path).envelope.cutoff_hz == 4.0


@pytest.mark.parametrize("mapping, fragment", [
    ({"bandpass": {"low_hz": -1}}, "conditioning.bandpass.low_hz must be > 0"),
    ({"bandpass": {"low_hz": 300, "high_hz": 200}}, "conditioning.bandpass.high_hz"),
    ({"bandpass": {"order": 2.5}}, "conditioning.bandpass.order must be an integer"),
    ({"bandpass": {"lowhz": 10}}, "unknown option(s) lowhz"),
    ({"notch": {"frequency_hz": 55}}, "conditioning.notch.frequency_hz must be 50, 60"),
    ({"notch": {"quality": "high"}}, "conditioning.notch.quality must be a number"),
    ({"envelope": {"cutoff_hz": 60}}, "must be below half the output rate"),
    ({"normalisation": {"mode": "max"}}, "must be one of calibration, running"),
    ({"bad_samples": {"output": "nan"}}, "must be one of hold, zero"),
    ({"gaps": {"policy": "ignore"}}, "must be one of bridge, reset"),
    ({"quality": {"saturation_run_s": 1.0}}, "below window_s"),
    ({"quality": {"flat_ptp_v": True}}, "must be a number"),
    ({"envelope": 5}, "conditioning.envelope must be a mapping"),
])
def test_invalid_options_are_named(mapping, fragment):
    with pytest.raises(ConfigError) as info:
        ConditioningSettings.from_mapping(mapping)
    assert fragment in str(info.value)


def test_invalid_yaml_file_error_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("notch: {frequency_hz: 55}\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_settings(path)


def _gain_db(sos: np.ndarray, fs: float, f: float) -> float:
    _, h = signal.sosfreqz(sos, worN=[f], fs=fs)
    return 20 * np.log10(abs(h[0]))


def test_chain_frequency_response():
    design = design_filters(ConditioningSettings(), 2000.0)
    assert design.bandpass_hz == (20.0, 450.0)
    assert design.notch_hz == (50.0,)
    assert _gain_db(design.pre_sos, 2000, 50.0) < -30  # mains removed
    assert _gain_db(design.pre_sos, 2000, 5.0) < -40  # motion artefact removed
    assert _gain_db(design.pre_sos, 2000, 900.0) < -20  # above the band
    assert abs(_gain_db(design.pre_sos, 2000, 120.0)) < 1.0  # EMG band passes
    assert _gain_db(design.envelope_sos, 2000, 5.0) == pytest.approx(-3.0, abs=0.1)
    assert design.decimation == 20 and design.output_rate == 100.0


def test_high_cutoff_is_clipped_below_nyquist_and_harmonics_stop_there():
    settings = ConditioningSettings().replace(notch=NotchSettings(frequency_hz=60.0, harmonics=5))
    design = design_filters(settings, 500.0)
    assert design.bandpass_hz == (20.0, 225.0)
    assert design.notch_hz == (60.0, 120.0, 180.0)


def test_band_below_clipped_top_is_an_error():
    settings = ConditioningSettings.from_mapping(
        {"bandpass": {"low_hz": 100.0}, "output_rate_hz": 50})
    with pytest.raises(ConfigError, match=r"low_hz \(100.0 Hz\) must be below"):
        design_filters(settings, 200.0)


def test_decimation_must_divide_the_sample_rate():
    settings = ConditioningSettings.from_mapping({"output_rate_hz": 300})
    with pytest.raises(ConfigError, match="must divide the sample rate"):
        design_filters(settings, 1000.0)
    with pytest.raises(ConfigError, match="must not exceed"):
        design_filters(ConditioningSettings.from_mapping({"output_rate_hz": 2000}), 1000.0)
    assert design_filters(ConditioningSettings.from_mapping({"output_rate_hz": 250}),
                          1000.0).decimation == 4
