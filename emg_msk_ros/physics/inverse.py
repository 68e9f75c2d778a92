"""Inverse dynamics: the net muscle torque a measured motion theta(t) requires (numpy).

Velocity and acceleration come from central differences on the uniform samples (compact
three-point stencils; second-order one-sided stencils at the two ends).
"""

from __future__ import annotations

import numpy as np

from emg_msk_ros.physics.preset import Preset


def derivatives(theta, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """(theta', theta'') of samples theta (T, ...) taken every ``dt`` s; T >= 4."""
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape[0] < 4:
        raise ValueError(f"need at least 4 samples of theta, got {theta.shape[0]}")
    velocity = np.gradient(theta, dt, axis=0, edge_order=2)
    acceleration = np.empty_like(theta)
    acceleration[1:-1] = (theta[2:] - 2.0 * theta[1:-1] + theta[:-2]) / dt**2
    acceleration[0] = (2 * theta[0] - 5 * theta[1] + 4 * theta[2] - theta[3]) / dt**2
    acceleration[-1] = (2 * theta[-1] - 5 * theta[-2] + 4 * theta[-3] - theta[-4]) / dt**2
    return velocity, acceleration


def inverse_dynamics(preset: Preset, theta, dt: float, external_torque=0.0) -> np.ndarray:
    """Net muscle torque (N·m), shape (T, ...), that moves the joint along theta (rad).

    I·theta'' + B·theta' + K(theta - theta0) + m g l_c sin(theta - theta_hang) - tau_ext.
    """
    velocity, acceleration = derivatives(theta, dt)
    return preset.joint.required_muscle_torque(np.asarray(theta, dtype=np.float64), velocity,
                                               acceleration, external_torque)
