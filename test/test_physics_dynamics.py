"""Joint dynamics: forward simulation, inverse dynamics, static optimisation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import optimize

from emg_msk_ros.physics.forward import ForwardIntegrator, simulate_forward
from emg_msk_ros.physics.inverse import derivatives, inverse_dynamics
from emg_msk_ros.physics.preset import load_preset
from emg_msk_ros.physics.static_opt import static_optimization, torque_coefficients

pytestmark = pytest.mark.kernels  # float results: run on a second kernel family too

DT = 1e-3


def bursts(n: int, m: int, seed: int) -> np.ndarray:
    """Smooth agonist/antagonist excitation bursts (n, m) in 0..0.6."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) * DT
    u = np.zeros((n, m)) + 0.02
    for i in range(m):
        for _ in range(4):
            centre, width = rng.uniform(0, t[-1]), rng.uniform(0.1, 0.4)
            u[:, i] += rng.uniform(0.1, 0.4) * np.exp(-0.5 * ((t - centre) / width) ** 2)
    return np.clip(u, 0, 1)


@pytest.mark.parametrize("name", ["knee", "wrist"])
def test_forward_then_inverse_dynamics_recovers_the_torque(name):
    preset = load_preset(name)
    u = bursts(3000, preset.muscles.count, seed=1)
    result = simulate_forward(preset, u, DT, theta0=preset.joint.hang_angle - 0.5)
    assert np.all(np.isfinite(result.angle)) and np.ptp(result.angle) > 0.3  # it moved
    required = inverse_dynamics(preset, result.angle, DT)
    error = np.abs(required - result.torque)[2:-2]
    assert error.max() < 0.01 * np.abs(result.torque).max()
    # the recorded velocity is the central difference of the recorded angle
    velocity, _ = derivatives(result.angle, DT)
    np.testing.assert_allclose(result.velocity[1:-1], velocity[1:-1], atol=1e-9)
    # and the equation of motion holds in torch too (the learning loss uses it)
    _, alpha = derivatives(result.angle, DT)
    t = torch.tensor
    residual = preset.eom_residual(t(result.angle), t(result.velocity), t(alpha),
                                   t(result.force))
    assert residual[2:-2].abs().max().item() < 0.01 * np.abs(result.torque).max()


def test_external_torque_enters_the_equation_of_motion():
    preset = load_preset("knee")
    u = np.full((800, 4), 0.02)
    load = np.where(np.arange(800) > 200, 15.0, 0.0)
    result = simulate_forward(preset, u, DT, theta0=1.2, external_torque=load)
    required = inverse_dynamics(preset, result.angle, DT, external_torque=load)
    np.testing.assert_allclose(required[2:-2], result.torque[2:-2], atol=0.05)


def test_batched_and_single_trials_agree():
    preset = load_preset("wrist")
    u = np.stack([bursts(400, 5, seed=s) for s in (2, 3)], axis=1)  # (T, 2, M)
    batch = simulate_forward(preset, u, DT, theta0=np.array([0.1, -0.2]))
    for b, theta0 in enumerate((0.1, -0.2)):
        single = simulate_forward(preset, u[:, b], DT, theta0=theta0)
        np.testing.assert_allclose(batch.angle[:, b], single.angle, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(batch.force[:, b], single.force, rtol=1e-9, atol=1e-9)


def test_compliant_tendon_simulation_is_consistent_and_stiff_tendons_act_rigid():
    preset = load_preset("knee")
    u = bursts(600, 4, seed=4)
    compliant = simulate_forward(preset, u, DT, theta0=1.0, tendon="compliant")
    assert np.all(np.isfinite(compliant.angle)) and np.all(compliant.force >= 0)
    stiff = preset.with_muscles(replace(preset.muscles, tendon_strain=np.full(4, 0.005)))
    rigid = simulate_forward(stiff, u, DT, theta0=1.0)
    nearly_rigid = simulate_forward(stiff, u, DT, theta0=1.0, tendon="compliant")
    assert np.max(np.abs(nearly_rigid.angle - rigid.angle)) < 0.02
    # the compliant path is first-order accurate: inverse dynamics agrees to a few percent
    error = (inverse_dynamics(preset, compliant.angle, DT) - compliant.torque)[2:-2]
    assert np.sqrt(np.mean(error**2)) < 0.1 * np.sqrt(np.mean(compliant.torque**2))
    with pytest.raises(ValueError, match="tendon"):
        ForwardIntegrator(preset, DT, 1.0, tendon="elastic")


@pytest.fixture(scope="module")
def knee_motion():
    preset = load_preset("knee")
    result = simulate_forward(preset, bursts(2000, 4, seed=5), DT, theta0=1.0)
    return preset, result


def test_static_optimisation_reproduces_the_torque_within_bounds(knee_motion):
    preset, result = knee_motion
    torque = inverse_dynamics(preset, result.angle, DT)
    solution = static_optimization(preset, result.angle, result.velocity, torque)
    assert solution.feasible.all()
    np.testing.assert_allclose(solution.torque, torque, atol=1e-6 * np.abs(torque).max())
    assert solution.activation.min() >= 0.0 and solution.activation.max() <= 1.0
    # re-simulated forces with these activations give the torque (consistency with Hill)
    forces = preset.muscle_forces(solution.activation, result.angle, result.velocity)
    np.testing.assert_allclose(preset.muscle_torque(forces, result.angle), torque,
                               atol=1e-6 * np.abs(torque).max())


def test_static_optimisation_is_optimal_against_a_general_solver(knee_motion):
    preset, result = knee_motion
    frames = [100, 700, 1500]
    theta, omega = result.angle[frames], result.velocity[frames]
    torque = np.array([-60.0, 25.0, 80.0])
    solution = static_optimization(preset, theta, omega, torque)
    k, passive = torque_coefficients(preset, theta, omega)
    for i in range(len(frames)):
        reference = optimize.minimize(
            lambda a: a @ a, np.full(4, 0.2), jac=lambda a: 2 * a, method="SLSQP",
            bounds=[(0, 1)] * 4, constraints=[{"type": "eq",
                                               "fun": lambda a: k[i] @ a + passive[i] - torque[i]}],
            options={"ftol": 1e-14, "maxiter": 500})
        assert reference.success
        np.testing.assert_allclose(solution.activation[i], reference.x, atol=1e-5)


def test_static_optimisation_bounds_cocontraction_and_infeasible_torque(knee_motion):
    preset, result = knee_motion
    theta, omega = result.angle[:50], result.velocity[:50]
    plain = static_optimization(preset, theta, omega, 30.0)
    cocontracting = static_optimization(preset, theta, omega, 30.0, baseline=0.2)
    np.testing.assert_allclose(cocontracting.torque, 30.0, atol=1e-6)
    flexors = [2, 3]  # with +30 N·m (flexion) the extensors are antagonists
    assert plain.activation[:, :2].max() == 0.0
    assert cocontracting.activation[:, :2].min() > 0.0
    assert cocontracting.activation[:, flexors].mean() > plain.activation[:, flexors].mean()
    huge = static_optimization(preset, theta, omega, 5000.0)
    assert not huge.feasible.any()
    np.testing.assert_allclose(huge.activation[:, flexors], 1.0)
    assert huge.activation[:, :2].max() == 0.0 and np.all(huge.torque < 5000.0)
