"""The EMG-driven physics baseline: calibration recovers a perturbed model; streaming estimate."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from emg_msk_ros.physics.baseline import CalibrationBounds, EmgDrivenModel, calibrate
from emg_msk_ros.physics.forward import simulate_forward
from emg_msk_ros.physics.inverse import inverse_dynamics
from emg_msk_ros.physics.motions import MotionSettings, simulate_motion
from emg_msk_ros.physics.preset import load_preset

pytestmark = pytest.mark.kernels  # float results: run on a second kernel family too

DT = 1e-3


@pytest.fixture(scope="module")
def knee_trials():
    """A 'subject' whose muscles differ from the preset, and two of their trials."""
    nominal = load_preset("knee")
    subject = nominal.with_muscles(nominal.muscles.scaled(
        np.array([1.4, 0.7, 1.2, 0.8]), np.array([1.05, 0.95, 1.0, 1.1]), 1.0))
    subject = subject.with_activation(replace(nominal.activation, tau_act=0.02,
                                              tau_deact=0.06, delay=0.03))
    settings = MotionSettings(cocontraction=0.3)
    train, _ = simulate_motion(subject, 12.0, DT, np.random.default_rng(11), settings)
    test, _ = simulate_motion(subject, 8.0, DT, np.random.default_rng(12), settings)
    return nominal, subject, train, test


def torque_error(preset, trial, truth):
    """RMS (N·m) of the model's torque from the trial's excitations and motion."""
    activation = preset.activate(trial.excitation, DT)
    forces = preset.muscle_forces(activation, trial.angle, trial.velocity)
    required = inverse_dynamics(truth, trial.angle, DT)
    return float(np.sqrt(np.mean((preset.muscle_torque(forces, trial.angle) - required) ** 2)))


def test_calibration_recovers_the_subject(knee_trials):
    nominal, subject, train, test = knee_trials
    result = calibrate(nominal, train.excitation, train.angle, DT)
    assert result.rms_after < 0.1 * result.rms_before
    before, after = torque_error(nominal, test, subject), torque_error(result.preset, test,
                                                                         subject)
    # on a trial it has not seen (co-contraction amplifies small strength errors there)
    assert after < 0.35 * before
    bounds = CalibrationBounds()
    assert np.all((bounds.strength[0] <= result.strength) & (result.strength <= bounds.strength[1]))
    assert np.all(np.abs(result.fiber_length - 1) <= 0.2 + 1e-12)
    assert np.all(np.abs(result.tendon_length - 1) <= 0.2 + 1e-12)
    assert result.activation.delay == pytest.approx(0.03, abs=0.01)
    assert result.activation.tau_act == pytest.approx(0.02, abs=0.005)
    # the strongest lever, each muscle's strength, moves the right way
    assert np.all(np.sign(result.strength - 1) == np.sign([0.4, -0.3, 0.2, -0.2]))


def test_calibration_respects_tight_bounds(knee_trials):
    nominal, _, train, _ = knee_trials
    bounds = CalibrationBounds(strength=(0.9, 1.1), delay=(0.0, 0.01))
    result = calibrate(nominal, train.excitation[:4000], train.angle[:4000], DT, bounds=bounds,
                       max_iterations=5)
    assert np.all((result.strength >= 0.9) & (result.strength <= 1.1))
    assert 0.0 <= result.activation.delay <= 0.01
    with pytest.raises(ValueError, match="excitation must be"):
        calibrate(nominal, train.excitation[:, :3], train.angle, DT)


def test_streaming_model_reproduces_the_forward_simulation(knee_trials):
    _, subject, _, test = knee_trials
    model = EmgDrivenModel(subject, DT, test.angle[0], test.velocity[0], test.excitation[0])
    estimate = model.run(test.excitation[:2000])
    reference = simulate_forward(subject, test.excitation[:2000], DT, test.angle[0],
                                 test.velocity[0])
    np.testing.assert_allclose(estimate.angle, reference.angle, atol=1e-12)
    np.testing.assert_allclose(estimate.force, reference.force, rtol=1e-9)


def test_streaming_model_stops_at_the_joint_range():
    preset = load_preset("wrist")
    model = EmgDrivenModel(preset, DT, 0.0)
    full_flexion = np.array([1.0, 1.0, 0.0, 0.0, 0.0])
    states = [model.step(full_flexion) for _ in range(1500)]
    lo, hi = preset.joint.range
    assert all(lo <= s.theta <= hi for s in states)
    assert states[-1].theta == pytest.approx(hi, abs=0.01)
