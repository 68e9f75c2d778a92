"""Activation dynamics: neural excitation u (0..1) to muscle activation a (0..1).

Two models, both numpy or torch (differentiable), over arrays of shape (T, ..., M) with time on
axis 0 and sample interval ``dt`` (s):

- ``first_order`` (Thelen 2003, as in OpenSim): da/dt = (u - a) / tau(u, a) with
  tau = tau_act·(0.5 + 1.5a) when u > a and tau_deact / (0.5 + 1.5a) otherwise. Each step is
  the exponential solution for u held over the step and tau taken at the step's midpoint, so
  it is stable at any dt and accurate to second order.
- ``recursive`` (CEINMS; Lloyd & Besier, J. Biomech. 36:765-776, 2003): the critically shaped
  second-order filter u_k = alpha·e_{k-d} - beta1·u_{k-1} - beta2·u_{k-2} with
  beta1 = C1 + C2, beta2 = C1·C2, alpha = 1 + beta1 + beta2 (unit gain). The coefficients are
  given as rate-independent pole time constants tau1, tau2: C_i = -exp(-dt / tau_i).

Both are followed by the CEINMS nonlinearity a = (exp(A·u) - 1) / (exp(A) - 1) with shape
factor A in [-3, 0] (A = 0: linear), and preceded by the electromechanical delay (s).
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

import numpy as np

from emg_msk_ros.physics.backend import clip, is_tensor, like, namespace

MODELS = ("first_order", "recursive")
# |A| below this is treated as the linear limit (the formula is 0/0 at A = 0).
_LINEAR_SHAPE = 1e-6


@dataclass(frozen=True)
class ActivationParams:
    """Activation model and constants; times in s."""

    model: str = "first_order"
    tau_act: float = 0.015  # first_order activation time constant (OpenSim Thelen2003Muscle)
    tau_deact: float = 0.05  # first_order deactivation time constant (OpenSim Thelen2003Muscle)
    tau1: float = 0.02  # recursive: first pole time constant
    tau2: float = 0.04  # recursive: second pole time constant
    shape_factor: float = 0.0  # A in [-3, 0]
    delay: float = 0.0  # electromechanical delay

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"activation model must be one of {MODELS}, got {self.model!r}")


def first_order_step(a, u, dt: float, tau_act, tau_deact):
    """One step of Thelen's first-order activation dynamics: a at t + dt (u held over the
    step). Exponential integrator with tau taken at the step's midpoint (second order)."""
    xp = namespace(a, u)
    rising = u > a
    scale = 0.5 + 1.5 * a
    first = u + (a - u) * xp.exp(-dt / xp.where(rising, tau_act * scale, tau_deact / scale))
    scale = 0.5 + 0.75 * (a + first)  # at the midpoint activation
    return u + (a - u) * xp.exp(-dt / xp.where(rising, tau_act * scale, tau_deact / scale))


def recursive_coefficients(dt: float, tau1, tau2):
    """CEINMS (alpha, beta1, beta2) for a step dt and pole time constants tau1, tau2 (s)."""
    xp = namespace(tau1, tau2)
    c1 = -xp.exp(-dt / like(tau1, tau1))
    c2 = -xp.exp(-dt / like(tau2, tau2))
    beta1, beta2 = c1 + c2, c1 * c2
    return 1.0 + beta1 + beta2, beta1, beta2


def nonlinearity(u, shape_factor):
    """CEINMS shape nonlinearity, (exp(A u) - 1) / (exp(A) - 1); A -> 0 is the identity."""
    xp = namespace(u, shape_factor)
    shape = clip(like(shape_factor, u), max=-_LINEAR_SHAPE)
    return xp.expm1(shape * u) / xp.expm1(shape)


def delayed(u, dt: float, delay):
    """``u`` (T, ...) delayed by ``delay`` s along axis 0, by linear interpolation between
    samples; the first sample is held before the start. Differentiable in ``delay`` (torch)."""
    xp = namespace(u, delay)
    steps = float(delay.detach() if is_tensor(delay) else delay) / dt
    whole = math.floor(steps)
    frac = delay / dt - whole  # keeps the autograd link when delay is a tensor
    if whole == 0 and steps == 0.0:
        return u
    n = u.shape[0]
    pad = xp.stack([u[0]] * min(whole + 1, n), 0)
    padded = xp.concatenate([pad, u], 0)  # padded[j + whole + 1] = u[j]
    shifted = padded[1:n + 1]  # u[k - whole]
    shifted_more = padded[0:n]  # u[k - whole - 1]
    return (1.0 - frac) * shifted + frac * shifted_more


def recursive_step(prev, prev2, u, coefficients):
    """One step of the CEINMS filter: the new output from the two previous ones and input u."""
    alpha, beta1, beta2 = coefficients
    return alpha * u - beta1 * prev - beta2 * prev2


def first_order(u, dt: float, tau_act, tau_deact, a0=None):
    """Activation (T, ..., M) from excitation (T, ..., M): a_k = step(a_{k-1}, u_k).

    ``a0`` is a_{-1}; by default u[0] (steady state at the start).
    """
    xp = namespace(u)
    a = u[0] if a0 is None else a0
    out = []
    for k in range(u.shape[0]):
        a = first_order_step(a, u[k], dt, tau_act, tau_deact)
        out.append(a)
    return xp.stack(out, 0)


def recursive(u, dt: float, tau1, tau2, u0=None):
    """CEINMS recursive filter output (T, ..., M) from excitation (T, ..., M).

    The filter starts at rest on ``u0`` (default u[0]): u_{-1} = u_{-2} = u0.
    """
    xp = namespace(u)
    coefficients = recursive_coefficients(dt, tau1, tau2)
    prev = prev2 = u[0] if u0 is None else u0
    out = []
    for k in range(u.shape[0]):
        prev2, prev = prev, recursive_step(prev, prev2, u[k], coefficients)
        out.append(prev)
    return xp.stack(out, 0)


def activate(u, dt: float, params: ActivationParams, a0=None):
    """Full chain: delay, then the chosen dynamics, then the shape nonlinearity; (T, ..., M).

    ``a0`` is the dynamics' state before the first sample (before the nonlinearity).
    """
    shifted = delayed(u, dt, params.delay)
    if params.model == "first_order":
        neural = first_order(shifted, dt, params.tau_act, params.tau_deact, a0)
    else:
        neural = recursive(shifted, dt, params.tau1, params.tau2, a0)
    return nonlinearity(neural, params.shape_factor)


class ActivationFilter:
    """The same chain as :func:`activate`, one sample at a time (numpy), for streaming use."""

    def __init__(self, params: ActivationParams, dt: float, initial) -> None:
        self.params = params
        self.dt = dt
        initial = np.asarray(initial, dtype=np.float64)
        self._whole = math.floor(params.delay / dt)
        self._frac = params.delay / dt - self._whole
        self._history = collections.deque([initial] * (self._whole + 2), maxlen=self._whole + 2)
        self._state = (initial, initial)
        self._coefficients = recursive_coefficients(dt, params.tau1, params.tau2)
        self._linear = params.shape_factor == 0.0

    def step(self, u):
        """Activation after a sample interval with excitation ``u`` (..., M)."""
        self._history.append(np.asarray(u, dtype=np.float64))
        # history[-1] = u_k, history[-1 - w] = u_{k-w}
        w, f = self._whole, self._frac
        shifted = self._history[-1 - w]
        if f:
            shifted = (1.0 - f) * shifted + f * self._history[-2 - w]
        prev, prev2 = self._state
        if self.params.model == "first_order":
            tau_act, tau_deact = self.params.tau_act, self.params.tau_deact
            if shifted.ndim == 1:  # one trial: muscle by muscle in floats (less overhead)
                now = np.array([first_order_step(p, x, self.dt, tau_act, tau_deact)
                                for p, x in zip(prev.tolist(), shifted.tolist())])
            else:
                now = first_order_step(prev, shifted, self.dt, tau_act, tau_deact)
        else:
            now = recursive_step(prev, prev2, shifted, self._coefficients)
        self._state = (now, prev)
        return now if self._linear else nonlinearity(now, self.params.shape_factor)
