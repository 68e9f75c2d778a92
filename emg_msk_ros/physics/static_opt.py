"""Static optimisation: muscle activations that produce a joint torque at least effort.

At each instant, with the joint angle and velocity given, the rigid-tendon force is affine in
activation: F_i = F_i,passive + a_i·F_i,active, so the torque is p + sum_i k_i·a_i with
k_i = r_i·F0_i·f_L·f_V·cos(phi). The problem

    minimise sum_i (a_i - b_i)^2   subject to   p + sum_i k_i a_i = tau,   0 <= a_i <= 1

(b = 0: the classic sum of squared activations; b > 0 asks for co-contraction) has the
solution a_i = clip(b_i + lambda·k_i, 0, 1) with one multiplier lambda. The torque is
piecewise linear and non-decreasing in lambda with breakpoints where a muscle reaches 0 or 1,
so lambda is found exactly, for all instants at once, by evaluating the torque at the sorted
breakpoints and interpolating. Where tau is out of reach the closest torque is returned and
``feasible`` is False.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emg_msk_ros.physics import muscle as hill
from emg_msk_ros.physics.muscle import MuscleSet
from emg_msk_ros.physics.preset import Preset


@dataclass
class StaticOptResult:
    """Activations (T, M) and the torque they produce (T,) in N·m."""

    activation: np.ndarray
    torque: np.ndarray
    feasible: np.ndarray  # (T,) bool: the requested torque was reached


def torque_coefficients(preset: Preset, theta, omega, muscles: MuscleSet | None = None):
    """(k, p): torque per unit activation (T, M) and passive muscle torque (T,), N·m."""
    muscles = preset.muscles if muscles is None else muscles
    theta = np.asarray(theta, dtype=np.float64)
    omega = np.asarray(omega, dtype=np.float64)
    lengths, arms = hill.geometry(muscles, theta)
    l_norm, v_norm, cos_phi = hill.rigid_fiber_state(muscles, lengths, -arms * omega[..., None])
    passive = hill.fiber_force(muscles, preset.curves, 0.0, l_norm, v_norm) * cos_phi
    full = hill.fiber_force(muscles, preset.curves, 1.0, l_norm, v_norm) * cos_phi
    return arms * (full - passive), (arms * passive).sum(-1)


def solve_activations(k, target, baseline=None) -> tuple[np.ndarray, np.ndarray]:
    """Minimise sum (a - b)^2 s.t. sum k·a = target, 0 <= a <= 1, for each row of k (T, M).

    Returns (a (T, M), achieved sum k·a (T,)).
    """
    k = np.asarray(k, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    b = np.zeros_like(k) if baseline is None else np.broadcast_to(
        np.clip(np.asarray(baseline, dtype=np.float64), 0.0, 1.0), k.shape)
    safe_k = np.where(k == 0.0, 1.0, k)
    breaks = np.concatenate([np.where(k == 0.0, 0.0, -b / safe_k),
                             np.where(k == 0.0, 0.0, (1.0 - b) / safe_k)], axis=-1)
    breaks.sort(axis=-1)  # (T, 2M)
    levels = np.clip(b[..., None, :] + breaks[..., :, None] * k[..., None, :], 0.0, 1.0)
    sums = (levels * k[..., None, :]).sum(-1)  # (T, 2M), non-decreasing
    goal = np.clip(target, sums[..., 0], sums[..., -1])
    upper = np.clip((sums < goal[..., None]).sum(-1), 1, breaks.shape[-1] - 1)
    lower = upper - 1
    pick = np.take_along_axis
    s_lo = pick(sums, lower[..., None], -1)[..., 0]
    s_hi = pick(sums, upper[..., None], -1)[..., 0]
    l_lo = pick(breaks, lower[..., None], -1)[..., 0]
    l_hi = pick(breaks, upper[..., None], -1)[..., 0]
    span = s_hi - s_lo
    fraction = np.where(span > 0.0, (goal - s_lo) / np.where(span > 0.0, span, 1.0), 1.0)
    lam = l_lo + fraction * (l_hi - l_lo)
    a = np.clip(b + lam[..., None] * k, 0.0, 1.0)
    return a, (a * k).sum(-1)


def static_optimization(preset: Preset, theta, omega, torque, baseline=None,
                        muscles: MuscleSet | None = None, tolerance: float = 1e-6
                        ) -> StaticOptResult:
    """Activations (T, M) that produce the net muscle ``torque`` (T,) N·m at theta (rad),
    omega (rad/s); ``baseline`` (M,) or (T, M) in 0..1 asks for co-contraction."""
    k, passive = torque_coefficients(preset, theta, omega, muscles)
    torque = np.broadcast_to(np.asarray(torque, dtype=np.float64), passive.shape)
    a, active = solve_activations(k, torque - passive, baseline)
    achieved = passive + active
    scale = np.abs(k).sum(-1) + 1.0
    return StaticOptResult(activation=a, torque=achieved,
                           feasible=np.abs(achieved - torque) <= tolerance * scale)
