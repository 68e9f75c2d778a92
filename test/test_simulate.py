"""The session simulator: physically consistent ground truth, realistic EMG, exact bags."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
from rosbags.rosbag2 import Reader
from scipy import signal

from emg_msk_ros.io.session_bag import read_recording
from emg_msk_ros.physics import simulate
from emg_msk_ros.physics.inverse import inverse_dynamics
from emg_msk_ros.physics.motions import MotionSettings, simulate_motion
from emg_msk_ros.physics.preset import load_preset

pytestmark = pytest.mark.kernels  # float results: run on a second kernel family too


@pytest.fixture(scope="module")
def knee_session():
    return simulate.simulate_session("knee", 10.0, seed=7)


def envelope(emg: np.ndarray, fs: float) -> np.ndarray:
    """Offline linear envelope: 20-450 Hz band-pass, 50 Hz notch, rectify, 4 Hz low-pass."""
    band = signal.butter(4, (20, 450), "bandpass", fs=fs, output="sos")
    b, a = signal.iirnotch(50.0, 30.0, fs=fs)
    clean = signal.filtfilt(b, a, signal.sosfiltfilt(band, emg, axis=0), axis=0)
    low = signal.butter(4, 4.0, fs=fs, output="sos")
    return signal.sosfiltfilt(low, np.abs(clean), axis=0)


def test_session_shapes_units_and_ranges(knee_session):
    rec = knee_session
    preset = load_preset("knee")
    assert rec.sample_rate == 2000.0 and rec.emg.shape == (20000, 4)
    assert rec.channel_names == ["RF", "VM", "BF", "ST"]
    assert rec.muscle_names == list(preset.muscle_names)
    assert rec.joint_name == "knee_angle_r"
    assert np.allclose(np.diff(rec.kin_time), 1e-3) and rec.kin_time.shape == (10000,)
    rms = np.sqrt(np.mean(rec.emg**2, axis=0))
    assert np.all((rms > 2e-6) & (rms < 1e-3))  # volts: tens of microvolts
    lo, hi = preset.joint.range
    assert lo <= rec.angle.min() and rec.angle.max() <= hi
    assert np.ptp(rec.angle) > 0.3 * (hi - lo)  # the knee moves across its range
    for name in ("excitation", "activation"):
        values = getattr(rec, name)
        assert values.min() >= 0.0 and values.max() <= 1.0
    assert np.all(rec.force >= -1e-9)
    meta = rec.metadata
    assert meta["preset"] == "knee" and meta["seed"] == 7 and meta["version"]
    assert meta["preset_sha256"] == preset.sha256 and meta["motion"]["regime"] == "mixed"


def test_ground_truth_obeys_the_equation_of_motion(knee_session):
    rec = knee_session
    preset = load_preset("knee")
    required = inverse_dynamics(preset, rec.angle, 1e-3)
    error = np.abs(required - rec.net_moment)[2:-2]
    assert error.max() < 0.01 * np.abs(rec.net_moment).max()
    np.testing.assert_allclose(rec.moment, rec.force * preset.moment_arms(rec.angle),
                               rtol=1e-9, atol=1e-9)
    forces = preset.muscle_forces(rec.activation, rec.angle, rec.velocity)
    np.testing.assert_allclose(forces, rec.force, rtol=1e-3, atol=0.5)


def test_emg_envelope_follows_the_true_excitation(knee_session):
    rec = knee_session
    env = envelope(rec.emg, rec.sample_rate)
    for c, name in enumerate(rec.channel_names):
        excitation = np.interp(rec.emg_time, rec.kin_time, rec.excitation[:, c])
        r = np.corrcoef(env[:, c], excitation)[0, 1]
        assert r > 0.9, f"{name}: r = {r:.3f}"


def test_same_seed_same_session_and_other_seeds_differ():
    a = simulate.simulate_session("wrist", 2.0, seed=3)
    b = simulate.simulate_session("wrist", 2.0, seed=3)
    c = simulate.simulate_session("wrist", 2.0, seed=4)
    np.testing.assert_array_equal(a.emg, b.emg)
    np.testing.assert_array_equal(a.angle, b.angle)
    assert not np.array_equal(a.emg, c.emg) and not np.array_equal(a.angle, c.angle)


def test_speed_regimes():
    slow = simulate.simulate_session("wrist", 8.0, 1, motion=MotionSettings(regime="slow"))
    fast = simulate.simulate_session("wrist", 8.0, 1, motion=MotionSettings(regime="fast"))
    capped = simulate.simulate_session("wrist", 8.0, 1, motion=MotionSettings(max_speed=0.8))
    peak = [np.percentile(np.abs(r.velocity), 99) for r in (slow, fast, capped)]
    assert peak[1] > 2 * peak[0]
    assert peak[2] < 1.2 * 0.8


def test_motor_noise_grows_with_the_excitation_and_spares_relaxed_muscles():
    preset = load_preset("knee")
    rng = np.random.default_rng(3)
    quiet, _ = simulate_motion(preset, 3.0, 1e-3, np.random.default_rng(3),
                               MotionSettings(excitation_noise=0.0))
    noisy, _ = simulate_motion(preset, 3.0, 1e-3, rng, MotionSettings(excitation_noise=0.05))
    rest = slice(0, 400)  # every trial starts relaxed (>= 0.5 s) at the tone, 0.02
    assert np.allclose(quiet.excitation[rest], 0.02, atol=1e-3)
    wobble = np.std(noisy.excitation[rest] - quiet.excitation[rest])
    assert 0.0 < wobble < 0.05 * 0.02 * 1.5  # about 5 % of the tone, not of full excitation
    with pytest.raises(ValueError, match="excitation_noise"):
        MotionSettings(excitation_noise=-0.1)


def cli_args(tmp_path, **extra):
    parser = argparse.ArgumentParser()
    simulate.configure(parser)
    argv = ["--preset", "wrist", "--duration", "1.5", "--seed", "5", "--out", str(tmp_path)]
    for key, value in extra.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return parser.parse_args(argv)


def test_cli_writes_a_bag_that_reads_back_intact(tmp_path):
    out = tmp_path / "a" / "session"
    assert simulate.run(cli_args(out)) == 0
    expected = simulate.simulate_session("wrist", 1.5, seed=5)
    back = read_recording(out)
    np.testing.assert_allclose(back.emg, expected.emg.astype(np.float32), rtol=0, atol=0)
    np.testing.assert_allclose(back.angle, expected.angle, rtol=1e-12)
    np.testing.assert_allclose(back.force, expected.force, rtol=1e-12)
    assert back.channel_names == expected.channel_names
    assert back.metadata["seed"] == 5 and back.metadata["preset"] == "wrist"
    with Reader(out) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert counts["/emg/raw"] == math.ceil(3000 / 20)
    # the exoskeleton's sensor (an encoder at 500 Hz) on joint_states, the truth apart
    assert counts["/session/truth/joint_states"] == counts["/msk/muscle_states"] == 1500
    assert counts["/joint_states"] == 750
    np.testing.assert_allclose(back.measured_angle, expected.measured_angle, rtol=1e-12)
    np.testing.assert_allclose(back.measured_velocity, expected.measured_velocity, rtol=1e-12)
    np.testing.assert_allclose(back.measured_time, expected.measured_time, atol=1e-9)
    assert counts["/session/metadata"] == 1
    # the same seed gives a byte-identical bag
    again = tmp_path / "b" / "session"
    assert simulate.run(cli_args(again)) == 0
    for name in ("session.mcap", "metadata.yaml"):
        assert (out / name).read_bytes() == (again / name).read_bytes()


def test_cli_reports_bad_input(tmp_path, capsys):
    assert simulate.run(cli_args(tmp_path / "x", preset="elbow")) == 1
    assert "elbow" in capsys.readouterr().err
    assert simulate.run(cli_args(tmp_path / "y", emg_rate=600)) == 1
    assert "450" in capsys.readouterr().err  # the EMG band does not fit under Nyquist
