"""MVC / reference calibration: robust reference, YAML round trip, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from emg_msk_ros.signal import (
    Calibration,
    Conditioner,
    ConditioningSettings,
    ConfigError,
    compute_calibration,
    condition_offline,
)
from emg_msk_ros.signal.calibration import rest_levels
from emg_msk_ros.signal.config import EnvelopeSettings, NormalisationSettings
from emg_msk_ros.signal.synthetic import modulated_noise

pytestmark = pytest.mark.kernels  # float results: run on a second kernel family too

FS = 1000.0
NAMES = ["RF", "BF"]
SETTINGS = ConditioningSettings()


def _steady(amplitude_v: float, seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    """Stationary EMG-like noise of a given RMS (V) on two channels."""
    return amplitude_v * np.random.default_rng(seed).standard_normal((round(seconds * FS), 2))


def test_reference_is_robust_to_a_spike_unlike_the_maximum():
    emg = _steady(1e-4, seconds=30.0)
    spiky = emg.copy()
    spiky[5000, 0] = 5e-3  # one 5 mV artefact sample on RF (50 x the RMS)
    clean = compute_calibration(emg, FS, NAMES, SETTINGS)
    hit = compute_calibration(spiky, FS, NAMES, SETTINGS)
    assert hit.references["RF"] == pytest.approx(clean.references["RF"], rel=0.05)
    envelope = condition_offline(emg, FS, NAMES, SETTINGS, unnormalised=True).excitation
    spiky_envelope = condition_offline(spiky, FS, NAMES, SETTINGS, unnormalised=True).excitation
    assert spiky_envelope[:, 0].max() > 2 * envelope[:, 0].max()


def test_excitation_scales_with_amplitude_relative_to_the_reference():
    calibration = compute_calibration(_steady(1e-4), FS, NAMES, SETTINGS)
    half = condition_offline(_steady(0.5e-4, seed=1), FS, NAMES, SETTINGS, calibration)
    steady = half.excitation[100:]  # after the envelope filter settled (1 s)
    assert np.median(steady) == pytest.approx(0.5 * np.median(
        condition_offline(_steady(1e-4, seed=2), FS, NAMES, SETTINGS, calibration)
        .excitation[100:]), rel=0.05)
    loud = condition_offline(_steady(3e-4, seed=3), FS, NAMES, SETTINGS, calibration)
    assert loud.excitation.max() == 1.0 and loud.excitation.min() >= 0.0


def test_yaml_round_trip(tmp_path):
    emg, _ = modulated_noise(3.0, FS, 2, seed=4)
    calibration = compute_calibration(emg, FS, NAMES, SETTINGS, source="mvc.bag")
    path = calibration.save(tmp_path / "calibration.yaml")
    loaded = Calibration.load(path)
    assert loaded == calibration
    np.testing.assert_array_equal(
        condition_offline(emg, FS, NAMES, SETTINGS, loaded).excitation,
        condition_offline(emg, FS, NAMES, SETTINGS, calibration).excitation)


def test_rest_levels_measure_the_resting_envelope_and_round_trip(tmp_path):
    mvc = compute_calibration(_steady(1e-4), FS, NAMES, SETTINGS, source="mvc.bag")
    rest_emg = _steady(1e-4, seed=5) * [0.02, 0.05]  # 2 % and 5 % of the MVC amplitude
    rest = rest_levels(rest_emg, FS, NAMES, SETTINGS)
    calibration = Calibration(references=mvc.references, conditioning=mvc.conditioning,
                              source="mvc.bag", rest=rest)
    levels = calibration.rest_excitation_for(["BF", "RF"])
    assert levels[0] / levels[1] == pytest.approx(2.5, rel=0.05)  # in the order asked
    assert np.all((levels > 0.01) & (levels < 0.05))  # excitations: rest / reference
    # the resting level is what the rest recording's own excitation sits at
    rest_excitation = condition_offline(rest_emg, FS, NAMES, SETTINGS, calibration).excitation
    np.testing.assert_allclose(np.median(rest_excitation[200:], axis=0), levels[::-1], rtol=0.02)
    loaded = Calibration.load(calibration.save(tmp_path / "calibration.yaml"))
    assert loaded == calibration
    assert mvc.rest_excitation_for(NAMES) is None  # an MVC-only calibration has none
    with pytest.raises(ConfigError, match="channel RF has rest level .* below its reference"):
        Calibration(references=mvc.references, conditioning=mvc.conditioning,
                    rest={"RF": 2 * mvc.references["RF"], "BF": 0.0})
    with pytest.raises(ConfigError, match="rest level for channel VM, which has no reference"):
        Calibration(references=mvc.references, conditioning=mvc.conditioning, rest={"VM": 0.0})
    with pytest.raises(ConfigError, match="no rest level for channel.s. BF"):
        Calibration(references=mvc.references, conditioning=mvc.conditioning,
                    rest={"RF": 0.0}).rest_excitation_for(NAMES)


def test_channels_are_matched_by_name():
    calibration = Calibration(references={"BF": 2e-4, "RF": 1e-4},
                              conditioning=SETTINGS.envelope_signature())
    np.testing.assert_array_equal(calibration.reference_for(["RF", "BF"]), [1e-4, 2e-4])
    with pytest.raises(ConfigError, match="no reference for channel.s. VM"):
        Conditioner(SETTINGS, FS, ["RF", "VM"], calibration)


def test_refuses_to_normalise_without_calibration_unless_running_is_chosen():
    with pytest.raises(ConfigError, match="no calibration was given.*mode: running"):
        Conditioner(SETTINGS, FS, NAMES)
    running = SETTINGS.replace(normalisation=NormalisationSettings(mode="running"))
    out = Conditioner(running, FS, NAMES).process(_steady(1e-4, seconds=2.0))
    assert out.excitation.max() == 1.0  # the running peak is reached at some point


def test_running_estimate_keeps_rest_noise_below_one():
    running = SETTINGS.replace(normalisation=NormalisationSettings(mode="running",
                                                                   running_floor_v=2e-5))
    out = condition_offline(_steady(2e-6), FS, NAMES, running)  # 2 µV rest noise
    assert out.excitation.max() < 0.2


def test_calibration_from_other_filter_settings_is_refused():
    calibration = compute_calibration(_steady(1e-4), FS, NAMES, SETTINGS, source="mvc.bag")
    other = SETTINGS.replace(envelope=EnvelopeSettings(cutoff_hz=3.0))
    with pytest.raises(ConfigError, match="mvc.bag was measured with different conditioning"):
        Conditioner(other, FS, NAMES, calibration)


def test_flat_channel_cannot_be_calibrated():
    emg = _steady(1e-4)
    emg[:, 1] = 0.002
    with pytest.raises(ConfigError, match="channel BF has reference"):
        compute_calibration(emg, FS, NAMES, SETTINGS)


def test_calibration_notes_quality_problems():
    emg = _steady(1e-4)
    emg[2000:2600, 0] = np.nan
    calibration = compute_calibration(emg, FS, NAMES, SETTINGS)
    assert calibration.notes[0] == "channel RF: 600 invalid sample(s) replaced"
    assert any("RF: flat in" in note for note in calibration.notes)


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("references_v: {RF: 1}\n")
    with pytest.raises(ConfigError, match="x.yaml: not a calibration file"):
        Calibration.load(path)


def test_calibrate_command_writes_references_and_rest_levels(tmp_path, capsys):
    from emg_msk_ros.cli import main
    from emg_msk_ros.io.recording import Recording
    from emg_msk_ros.io.session_bag import write_recording

    def bag(name, emg, channels):
        return str(write_recording(tmp_path / name, Recording(
            emg=emg, sample_rate=FS, channel_names=channels)))

    mvc = bag("mvc", _steady(1e-4), NAMES)
    rest = bag("rest", _steady(1e-4, seed=6)[:, ::-1] * [0.05, 0.02], NAMES[::-1])
    out = tmp_path / "calibration.yaml"
    assert main(["calibrate", "--mvc", mvc, "--rest", rest, "--out", str(out)]) == 0
    calibration = Calibration.load(out)
    assert calibration.references == pytest.approx(  # the bag holds float32 samples
        compute_calibration(_steady(1e-4), FS, NAMES, SETTINGS).references, rel=1e-6)
    # channels are matched by name: BF rests at 2 %, RF at 5 % of the MVC amplitude
    levels = calibration.rest_excitation_for(NAMES)
    assert levels[1] / levels[0] == pytest.approx(2.5, rel=0.05)
    assert "rest" in capsys.readouterr().out

    one = bag("one", _steady(1e-4)[:, :1], ["RF"])
    assert main(["calibrate", "--mvc", mvc, "--rest", one, "--out",
                 str(tmp_path / "x.yaml")]) == 1
    assert "lacks channel(s) BF" in capsys.readouterr().err
    assert not (tmp_path / "x.yaml").exists()


def test_a_malformed_calibration_file_or_a_too_short_recording_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("references_v: {RF: [1,\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        Calibration.load(bad)
    with pytest.raises(ConfigError, match=r"^mvc.bag: 0.2 s of EMG; a calibration needs at "
                       r"least 1 s"):
        compute_calibration(_steady(1e-4, seconds=0.2), FS, NAMES, SETTINGS, source="mvc.bag")
