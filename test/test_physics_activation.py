"""Activation dynamics: first-order (Thelen), CEINMS recursive filter, shape factor, delay."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from emg_msk_ros.physics import activation as act
from emg_msk_ros.physics.activation import ActivationFilter, ActivationParams

pytestmark = pytest.mark.kernels  # float results: run on a second kernel family too


def thelen_ode(u_of_t, tau_act, tau_deact):
    def rhs(t, a):
        u = u_of_t(t)
        scale = 0.5 + 1.5 * a[0]
        tau = tau_act * scale if u > a[0] else tau_deact / scale
        return [(u - a[0]) / tau]
    return rhs


def test_first_order_matches_the_ode_for_steps_up_and_down():
    dt = 1e-3
    t = np.arange(600) * dt
    u = np.where(t < 0.3, 1.0, 0.0)
    a = act.first_order(u[:, None], dt, 0.015, 0.05, a0=np.array([0.0]))[:, 0]
    # a_k is the state at the end of sample k's interval, where u is held at u[k]
    reference = solve_ivp(thelen_ode(lambda s: 1.0 if s < 0.3 else 0.0, 0.015, 0.05),
                          (0, 0.6), [0.0], t_eval=t + dt, max_step=1e-4, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a, reference.y[0], atol=2.5e-3)  # largest in the first ms
    assert np.sqrt(np.mean((a - reference.y[0]) ** 2)) < 5e-4
    rise = np.argmax(a > 0.9) * dt
    fall = (np.argmax((t > 0.3) & (a < 0.1)) - 300) * dt
    assert 0.01 < rise < fall  # activation is faster than deactivation
    assert a.min() >= 0.0 and a.max() <= 1.0


def test_recursive_filter_has_unit_gain_and_a_monotone_step_response():
    dt = 1e-3
    alpha, beta1, beta2 = act.recursive_coefficients(dt, 0.02, 0.04)
    assert alpha - beta1 - beta2 == pytest.approx(1.0)  # as stated by Lloyd & Besier (2003)
    assert alpha == pytest.approx(1.0 + beta1 + beta2)  # i.e. unit gain at DC
    c1, c2 = -math.exp(-dt / 0.02), -math.exp(-dt / 0.04)
    assert beta1 == pytest.approx(c1 + c2) and beta2 == pytest.approx(c1 * c2)
    u = np.zeros((1000, 1))
    u[100:] = 1.0
    out = act.recursive(u, dt, 0.02, 0.04)[:, 0]
    assert out[-1] == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.diff(out) >= -1e-12) and out.max() <= 1.0 + 1e-12


def test_shape_factor_nonlinearity():
    u = np.array([0.0, 0.5, 1.0])
    np.testing.assert_allclose(act.nonlinearity(u, 0.0), u, atol=1e-6)
    expected = math.expm1(-1.5) / math.expm1(-3.0)  # A = -3 lifts low excitations
    np.testing.assert_allclose(act.nonlinearity(u, -3.0), [0.0, expected, 1.0], rtol=1e-12)
    assert expected == pytest.approx(0.8176, abs=1e-4)


def test_delay_shifts_with_interpolation():
    u = np.arange(10.0)[:, None]
    np.testing.assert_allclose(act.delayed(u, 0.01, 0.03)[:, 0],
                               [0, 0, 0, 0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_allclose(act.delayed(u, 0.01, 0.025)[3:, 0], np.arange(7) + 0.5)
    np.testing.assert_allclose(act.delayed(u, 0.01, 0.0), u)


@pytest.mark.parametrize("model", ["first_order", "recursive"])
def test_streaming_filter_equals_offline_chain(model):
    params = ActivationParams(model=model, tau_act=0.012, tau_deact=0.06, tau1=0.015,
                              tau2=0.03, shape_factor=-1.5, delay=0.0125)
    rng = np.random.default_rng(0)
    u = np.clip(np.cumsum(rng.normal(0, 0.05, (400, 3)), 0) % 1.0, 0, 1)
    offline = act.activate(u, 0.005, params)
    stream = ActivationFilter(params, 0.005, u[0])
    online = np.stack([stream.step(x) for x in u])
    np.testing.assert_allclose(online, offline, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("model", ["first_order", "recursive"])
def test_torch_matches_numpy_and_gradients_flow(model):
    params = ActivationParams(model=model, shape_factor=-1.0, delay=0.01)
    rng = np.random.default_rng(1)
    u = rng.uniform(0, 1, (120, 2, 4))
    expected = act.activate(u, 0.002, params)
    shape = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    delay = torch.tensor(0.01, dtype=torch.float64, requires_grad=True)
    got = act.delayed(torch.tensor(u), 0.002, delay)
    if model == "first_order":
        got = act.first_order(got, 0.002, params.tau_act, params.tau_deact)
    else:
        got = act.recursive(got, 0.002, params.tau1, params.tau2)
    got = act.nonlinearity(got, shape)
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-6, atol=1e-9)
    got.sum().backward()
    assert torch.isfinite(shape.grad) and shape.grad != 0
    assert torch.isfinite(delay.grad) and delay.grad != 0


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="activation model"):
        ActivationParams(model="second_order")
