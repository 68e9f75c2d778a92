"""Thelen (2003) curves at known points, their derivatives, and the three backends agreeing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emg_msk_ros.physics import curves

pytestmark = pytest.mark.kernels  # float results: run on a second kernel family too


def test_active_force_length_known_points():
    assert curves.force_length_active(np.array(1.0)) == pytest.approx(1.0)
    # exp(-(dl)^2 / 0.45) = 1/e at dl = sqrt(0.45)
    width = math.sqrt(0.45)
    values = curves.force_length_active(np.array([1 - width, 1 + width]))
    np.testing.assert_allclose(values, math.exp(-1.0), rtol=1e-12)
    assert curves.force_length_active(np.array(0.5)) == pytest.approx(math.exp(-0.25 / 0.45))


def test_passive_force_length_known_points():
    l_norm = np.array([0.6, 1.0, 1.3, 1.6, 1.9])
    values = curves.force_length_passive(l_norm, 0.6, 5.0)
    expected = [0.0, 0.0, math.expm1(2.5) / math.expm1(5.0), 1.0,
                math.expm1(7.5) / math.expm1(5.0)]
    np.testing.assert_allclose(values, expected, rtol=1e-12, atol=1e-15)
    # a softer muscle (strain 1.0 at F0, as gait9dof18musc's rect_fem_r) reaches 1 at l~ = 2
    assert curves.force_length_passive(np.array(2.0), 1.0, 5.0) == pytest.approx(1.0)


def test_force_velocity_known_points():
    v = np.array([-2.0, -1.0, -0.5, 0.0, 0.1, 100.0])
    f = curves.force_velocity(v)
    assert f[0] == 0.0 and f[1] == 0.0
    assert f[2] == pytest.approx(0.5 / (1 + 0.5 / 0.25))  # Hill: (1 + v)/(1 - v/Af)
    assert f[3] == pytest.approx(1.0)
    # eccentric: slope 2(1 + 1/Af) = 10 at 0, plateau Flen = 1.4
    c = 10.0 / 0.4
    assert f[4] == pytest.approx((1 + c * 1.4 * 0.1) / (1 + c * 0.1))
    assert f[5] == pytest.approx(1.4, abs=2e-3)
    assert np.all(np.diff(curves.force_velocity(np.linspace(-1, 3, 401))) >= 0)


def test_force_velocity_slope_matches_finite_differences():
    v = np.array([-0.9, -0.5, -0.2, -0.01, 0.01, 0.3, 2.0])
    h = 1e-6
    numeric = (curves.force_velocity(v + h) - curves.force_velocity(v - h)) / (2 * h)
    np.testing.assert_allclose(curves.force_velocity_slope(v), numeric, rtol=1e-5)
    assert curves.force_velocity_slope(np.array(-1.5)) == 0.0
    # concentric slope at 0 is 1 + 1/Af = 5, eccentric twice that
    assert curves.force_velocity_slope(np.array(0.0)) == pytest.approx(5.0)
    assert curves.force_velocity_slope(np.array(1e-12)) == pytest.approx(10.0)


def test_force_velocity_inverse_round_trip_and_extension():
    cap = 0.95 * 1.4  # above this the inverse continues linearly (Thelen 2003)
    v = np.linspace(-0.99, 0.15, 300)
    assert curves.force_velocity(v).max() < cap
    np.testing.assert_allclose(curves.force_velocity_inverse(curves.force_velocity(v)), v,
                               atol=1e-9)
    assert curves.force_velocity_inverse(np.array(-0.2)) == -1.0
    f = np.array([cap - 1e-9, cap, cap + 0.1, cap + 0.2])
    inverse = curves.force_velocity_inverse(f)
    assert inverse[1] - inverse[0] < 1e-6  # continuous at the cap
    assert inverse[3] - inverse[2] == pytest.approx(inverse[2] - inverse[1])  # linear above


def test_tendon_force_length_known_points():
    strain_f0 = 0.04
    toe_end = 0.609 * strain_f0
    f = curves.tendon_force_length(np.array([-0.01, 0.0, toe_end, strain_f0]), strain_f0)
    assert f[0] == 0.0 and f[1] == 0.0
    assert f[2] == pytest.approx(0.333)
    assert f[3] == pytest.approx(0.333 + 1.712 * (1 - 0.609), rel=1e-12)  # ~1 at F0
    # continuous and increasing across the end of the toe region
    s = np.linspace(0, 2 * strain_f0, 2001)
    values = curves.tendon_force_length(s, strain_f0)
    assert np.all(np.diff(values) > 0) and np.max(np.abs(np.diff(values))) < 5e-3


CURVES = [
    ("force_length_active", lambda x: x + 1.0, ()),
    ("force_length_passive", lambda x: x + 1.0, (0.6, 5.0)),
    ("force_velocity", lambda x: x, ()),
    ("force_velocity_slope", lambda x: x, ()),
    ("force_velocity_inverse", lambda x: x + 1.0, ()),
    ("tendon_force_length", lambda x: 0.05 * x, (0.04,)),
]


@pytest.mark.parametrize("name,shift,args", CURVES)
def test_numpy_torch_and_float_backends_agree(name, shift, args):
    x = shift(np.random.default_rng(0).uniform(-1.5, 1.5, (50, 4)))
    function = getattr(curves, name)
    expected = function(x, *args)
    from_torch = function(torch.tensor(x), *args).numpy()
    np.testing.assert_allclose(from_torch, expected, rtol=1e-6, atol=1e-9)
    from_floats = [function(float(v), *args) for v in x.ravel()]
    np.testing.assert_allclose(np.reshape(from_floats, x.shape), expected, rtol=1e-12,
                               atol=1e-15)


def test_torch_gradients_are_finite_across_branches():
    v = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.2, 5.0], dtype=torch.float64,
                     requires_grad=True)
    curves.force_velocity(v).sum().backward()
    assert torch.all(torch.isfinite(v.grad))
    # isometric (v = 0, common in holds) takes the concentric slope, as force_velocity_slope
    np.testing.assert_allclose(v.grad.numpy()[2:], curves.force_velocity_slope(
        v.detach().numpy())[2:], rtol=1e-9)
