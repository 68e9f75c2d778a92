"""Hill muscle-tendon units and the shipped presets' geometry: values that catch mistakes."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from emg_msk_ros.physics import muscle as hill
from emg_msk_ros.physics.curves import CurveParams
from emg_msk_ros.physics.preset import load_preset

pytestmark = pytest.mark.kernels  # float results: run on a second kernel family too

CURVES = CurveParams()


def one_muscle(f0=1000.0, l0=0.1, lts=0.2, phi0=0.3, lmt=None, tendon_strain=0.04):
    """A single muscle whose l_MT is constant (``lmt``, default: fibre at l0)."""
    if lmt is None:
        lmt = lts + l0 * math.cos(phi0)
    arrays = dict(max_isometric_force=f0, optimal_fiber_length=l0, tendon_slack_length=lts,
                  pennation_angle=phi0, max_contraction_velocity=10.0, passive_strain=0.6,
                  passive_shape=5.0, tendon_strain=tendon_strain)
    return hill.MuscleSet(**{k: np.array([v]) for k, v in arrays.items()},
                          lmt_poly=np.array([[lmt]]))


def test_isometric_full_activation_at_optimal_length_gives_f0_cos_phi():
    muscles = one_muscle(f0=1000.0, l0=0.1, lts=0.2, phi0=0.3)
    force = hill.hill_force(muscles, CURVES, np.array([1.0]), np.array(0.4), np.array(0.0))
    assert force[0] == pytest.approx(1000.0 * math.cos(0.3), rel=1e-12)
    half = hill.hill_force(muscles, CURVES, np.array([0.5]), np.array(0.4), np.array(0.0))
    assert half[0] == pytest.approx(500.0 * math.cos(0.3), rel=1e-12)


def test_pennation_keeps_the_muscle_thickness():
    muscles = one_muscle(l0=0.1, lts=0.2, phi0=0.3, lmt=0.2 + 0.12)
    l_norm, _, cos_phi = hill.rigid_fiber_state(muscles, np.array([0.32]), np.array([0.0]))
    fiber = l_norm[0] * 0.1
    assert fiber * math.sqrt(1 - cos_phi[0] ** 2) == pytest.approx(0.1 * math.sin(0.3))
    assert fiber * cos_phi[0] == pytest.approx(0.12)


def test_shortening_lowers_and_lengthening_raises_force():
    muscles = one_muscle()
    lengths, arms = np.array([0.2 + 0.1 * math.cos(0.3)]), np.array([0.02])
    forces = [hill.rigid_force(muscles, CURVES, np.array([1.0]), lengths, arms, np.array(w))[0]
              for w in (2.0, 0.0, -2.0)]  # positive omega shortens a muscle with r > 0
    assert forces[0] < forces[1] < forces[2]
    v_max_omega = 10.0 * 0.1 / (0.02 * math.cos(0.3))  # r·omega·cos(phi) = v_max·l0
    assert hill.rigid_force(muscles, CURVES, np.array([1.0]), lengths, arms,
                            np.array(1.01 * v_max_omega))[0] == pytest.approx(0.0, abs=1e-9)


def test_force_gradient_matches_finite_differences():
    preset = load_preset("knee")
    theta = np.array([0.3, 1.0, 1.7])
    omega = np.array([-2.0, 0.4, 1.5])
    a = np.array([[0.3, 0.6, 0.1, 0.9]] * 3)
    lengths, arms = hill.geometry(preset.muscles, theta)
    _, gradient = hill.rigid_force(preset.muscles, CURVES, a, lengths, arms, omega,
                                   gradient=True)
    h = 1e-6
    plus = hill.rigid_force(preset.muscles, CURVES, a, lengths, arms, omega + h)
    minus = hill.rigid_force(preset.muscles, CURVES, a, lengths, arms, omega - h)
    np.testing.assert_allclose(gradient, (plus - minus) / (2 * h), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["knee", "wrist"])
def test_moment_arms_match_finite_difference_of_lengths(name):
    preset = load_preset(name)
    theta = np.linspace(*preset.joint.range, 41)
    h = 1e-5
    numeric = -(preset.lmt(theta + h) - preset.lmt(theta - h)) / (2 * h)
    np.testing.assert_allclose(preset.moment_arms(theta), numeric, atol=1e-7)  # 0.1 um


def test_moment_arm_signs_follow_the_flexion_convention():
    knee = load_preset("knee")
    arms = knee.moment_arms(np.linspace(0.2, 1.8, 9))
    by_name = dict(zip(knee.muscle_names, arms.T))
    assert np.all(by_name["rectus_femoris"] < 0) and np.all(by_name["vastus_medialis"] < 0)
    assert np.all(by_name["biceps_femoris"] > 0) and np.all(by_name["semitendinosus"] > 0)
    # knee extensor moment arms of ~4-5 cm near 30-60 deg of flexion (gait2392 lineage)
    assert 0.03 < -by_name["vastus_medialis"][2] < 0.06
    wrist = load_preset("wrist")
    arms = dict(zip(wrist.muscle_names, wrist.moment_arms(np.linspace(-1, 1, 9)).T))
    assert np.all(arms["FCR"] > 0) and np.all(arms["FCU"] > 0)
    assert np.all(arms["ECRL"] < 0) and np.all(arms["ECRB"] < 0)


def test_scalar_and_array_paths_agree():
    preset = load_preset("wrist")
    theta, omega = 0.3, -1.2
    a = np.array([0.2, 0.5, 0.05, 0.7, 0.3])
    lengths, arms = hill.geometry(preset.muscles, np.array(theta))
    forces, gradients = hill.rigid_force(preset.muscles, CURVES, a, lengths, arms,
                                         np.array(omega), gradient=True)
    for i in range(preset.muscles.count):
        single = preset.muscles.single(i)
        length, arm = hill.geometry(single, theta)
        assert length == pytest.approx(lengths[i], rel=1e-12)
        assert arm == pytest.approx(arms[i], rel=1e-12)
        force, gradient = hill.rigid_force(single, CURVES, float(a[i]), length, arm, omega,
                                           gradient=True)
        assert force == pytest.approx(forces[i], rel=1e-12)
        assert gradient == pytest.approx(gradients[i], rel=1e-12)


def test_torch_matches_numpy_and_differentiates_parameters():
    preset = load_preset("knee")
    rng = np.random.default_rng(3)
    theta = rng.uniform(0.1, 1.9, 64)
    omega = rng.uniform(-4, 4, 64)
    a = rng.uniform(0, 1, (64, 4))
    expected = preset.muscle_forces(a, theta, omega)
    t = torch.tensor
    muscles = preset.muscles.like(t(theta))
    strength = torch.ones(4, dtype=torch.float64, requires_grad=True)
    scaled = muscles.scaled(strength)
    forces = preset.muscle_forces(t(a), t(theta), t(omega), muscles=scaled)
    np.testing.assert_allclose(forces.detach().numpy(), expected, rtol=1e-6, atol=1e-6)
    forces.sum().backward()
    np.testing.assert_allclose(strength.grad.numpy(), expected.sum(0), rtol=1e-9)
    np.testing.assert_allclose(preset.lmt(t(theta)).numpy(), preset.lmt(theta), rtol=1e-12)
    np.testing.assert_allclose(preset.moment_arms(t(theta)).numpy(),
                               preset.moment_arms(theta), rtol=1e-9, atol=1e-12)


def test_compliant_tendon_equilibrium_and_stiff_limit():
    muscles = one_muscle(f0=800.0, l0=0.08, lts=0.25, phi0=0.2, lmt=0.25 + 0.085)
    lmt = np.array([0.335])
    fiber = hill.compliant_static_fiber_length(muscles, CURVES, 0.7, lmt)
    velocity = hill.compliant_fiber_velocity(muscles, CURVES, 0.7, fiber, lmt)
    assert velocity[0] == pytest.approx(0.0, abs=1e-9)
    tendon = hill.compliant_force(muscles, fiber, lmt)
    cos_phi, _ = hill.compliant_geometry(muscles, fiber, lmt)
    along = hill.fiber_force(muscles, CURVES, 0.7, fiber / 0.08, 0.0) * cos_phi
    assert tendon[0] == pytest.approx(along[0], rel=1e-6)
    # a nearly inextensible tendon gives the rigid-tendon force
    stiff = replace(muscles, tendon_strain=np.array([1e-5]))
    fiber = hill.compliant_static_fiber_length(stiff, CURVES, 0.7, lmt)
    rigid = hill.hill_force(stiff, CURVES, np.array([0.7]), np.array(0.0), np.array(0.0))
    assert hill.compliant_force(stiff, fiber, lmt)[0] == pytest.approx(rigid[0], rel=1e-3)
