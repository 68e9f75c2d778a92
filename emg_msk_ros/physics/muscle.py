"""Hill-type muscle-tendon units, vectorised over muscles (last axis) and any leading axes.

Every function works on numpy arrays and on torch tensors (differentiable), with the same
code. Force of muscle i (rigid tendon, the default):

    F = F0 · [a·f_L(l~)·f_V(v~) + f_PE(l~) + beta·v~] · cos(phi)

with the fibre length from the muscle-tendon length l_MT(theta) by constant-thickness
pennation, l_M·sin(phi) = l0·sin(phi0), and l_M·cos(phi) = l_MT - l_TS (rigid tendon). The
fibre velocity is v_M = v_MT·cos(phi), with v_MT = -r(theta)·theta_dot and the moment arm
r = -d l_MT / d theta (positive: the muscle pulls toward positive theta).

A compliant tendon (optional) adds the fibre length as a state: tendon force
F0·f_T((l_MT - l_M cos(phi) - l_TS) / l_TS) equals the fibre force along the tendon, which
fixes the fibre velocity through the inverse force-velocity curve.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from emg_msk_ros.physics.backend import clip, is_scalar, is_tensor, like, namespace
from emg_msk_ros.physics.curves import (
    CurveParams,
    force_length_active,
    force_length_passive,
    force_velocity,
    force_velocity_inverse,
    force_velocity_slope,
    tendon_force_length,
)

# Rigid tendon: the fibre's length along the tendon, l_MT - l_TS, is floored at this fraction
# of l0 so that a slack muscle-tendon unit gives (almost) no force and finite gradients.
_MIN_ALONG_TENDON = 1e-3
# Compliant tendon: activation and f_L floors that keep the inverse force-velocity finite
# (OpenSim's Thelen2003Muscle uses a minimum activation of 0.01 for the same reason).
_MIN_ACTIVATION = 0.01
_MIN_FORCE_LENGTH = 0.1
# Largest pennation the compliant-tendon fibre may reach, cos(phi) >= this.
_MIN_COS_PENNATION = 0.05


@dataclass(frozen=True)
class MuscleSet:
    """Per-muscle parameters as arrays of shape (M,) (lmt_poly: (M, P)); numpy or torch.

    Units: forces N, lengths m, angles rad, ``vmax`` in optimal fibre lengths per second.
    ``lmt_poly[i, k]`` is the coefficient of theta**k in l_MT,i(theta) (m, theta in rad).
    """

    max_isometric_force: np.ndarray  # F0, N
    optimal_fiber_length: np.ndarray  # l0, m
    tendon_slack_length: np.ndarray  # l_TS, m
    pennation_angle: np.ndarray  # phi0 at l0, rad
    max_contraction_velocity: np.ndarray  # v_max, l0/s
    passive_strain: np.ndarray  # fibre strain at which f_PE = 1
    passive_shape: np.ndarray  # k_PE
    tendon_strain: np.ndarray  # tendon strain at F0 (compliant tendon only)
    lmt_poly: np.ndarray  # (M, P)

    @property
    def count(self) -> int:
        """Number of muscles M."""
        return int(self.max_isometric_force.shape[0])

    def like(self, reference) -> MuscleSet:
        """The same parameters as arrays of ``reference``'s kind (numpy, or torch dtype/device).

        Tensors keep their autograd history, so learnable parameters stay learnable. A
        one-muscle set of Python floats (:meth:`single`) is returned as it is.
        """
        first = type(self.max_isometric_force)
        if first is float or first is np.ndarray and type(reference) is np.ndarray:
            return self
        first = self.max_isometric_force
        if is_tensor(first) == is_tensor(reference) and (
                not is_tensor(reference)
                or (first.dtype, first.device) == (reference.dtype, reference.device)):
            return self
        return replace(self, **{f.name: like(getattr(self, f.name), reference)
                                for f in fields(self)})

    def single(self, index: int) -> MuscleSet:
        """Muscle ``index`` alone, as Python floats (``lmt_poly`` a tuple), numpy sets only."""
        return replace(self, **{f.name: (tuple(float(c) for c in getattr(self, f.name)[index])
                                         if f.name == "lmt_poly"
                                         else float(getattr(self, f.name)[index]))
                                for f in fields(self)})

    def scaled(self, strength=1.0, fiber_length=1.0, tendon_length=1.0) -> MuscleSet:
        """Parameters with F0, l0 and l_TS multiplied by per-muscle factors (calibration)."""
        return replace(
            self,
            max_isometric_force=self.max_isometric_force * strength,
            optimal_fiber_length=self.optimal_fiber_length * fiber_length,
            tendon_slack_length=self.tendon_slack_length * tendon_length,
        )


def _powers(theta, count: int):
    """theta**k for k = 0..count-1 on a new last axis: (..., count)."""
    if is_tensor(theta):
        import torch

        return torch.stack([theta**k for k in range(count)], -1)
    return theta[..., None] ** np.arange(count)


def geometry(muscles: MuscleSet, theta):
    """(l_MT, r): muscle-tendon lengths (m) and moment arms r = -d l_MT / d theta (m), both of
    shape (..., M), at joint angles theta (rad) of shape (...). For a one-muscle set of
    floats and a float theta, two floats."""
    if is_scalar(theta) and type(muscles.lmt_poly) is tuple:
        length = slope = 0.0
        for c in reversed(muscles.lmt_poly):  # Horner, with the derivative alongside
            slope = slope * theta + length
            length = length * theta + c
        return length, -slope
    theta = np.asarray(theta, dtype=np.float64) if is_scalar(theta) else like(theta, theta)
    m = muscles.like(theta)
    count = m.lmt_poly.shape[1]
    powers = _powers(theta, count)
    k = like(np.arange(1, count, dtype=np.float64), theta)
    return powers @ m.lmt_poly.T, powers[..., :-1] @ (m.lmt_poly[:, 1:] * -k).T


def lmt(muscles: MuscleSet, theta):
    """Muscle-tendon lengths l_MT(theta) in m, shape (..., M) for theta of shape (...)."""
    return geometry(muscles, theta)[0]


def moment_arms(muscles: MuscleSet, theta):
    """Moment arms r(theta) = -d l_MT / d theta in m, shape (..., M)."""
    return geometry(muscles, theta)[1]


def rigid_fiber_state(muscles: MuscleSet, lmt_value, vmt):
    """Normalised fibre length l~, velocity v~ and cos(phi) of a rigid-tendon unit.

    ``lmt_value`` (m) and ``vmt`` (m/s, positive lengthening) have shape (..., M).
    """
    xp = namespace(lmt_value)
    m = muscles.like(lmt_value)
    along = clip(lmt_value - m.tendon_slack_length,
                    min=_MIN_ALONG_TENDON * m.optimal_fiber_length)
    height = m.optimal_fiber_length * xp.sin(m.pennation_angle)
    fiber = xp.sqrt(along**2 + height**2)
    cos_phi = along / fiber
    v_norm = vmt * cos_phi / (m.max_contraction_velocity * m.optimal_fiber_length)
    return fiber / m.optimal_fiber_length, v_norm, cos_phi


def fiber_force(muscles: MuscleSet, curves: CurveParams, activation, l_norm, v_norm):
    """Fibre force along the fibre, N: F0·(a f_L f_V + f_PE + beta v~)."""
    m = muscles.like(l_norm)
    active = activation * force_length_active(l_norm, curves.fl_width) * force_velocity(
        v_norm, curves.fv_af, curves.fv_flen)
    passive = force_length_passive(l_norm, m.passive_strain, m.passive_shape)
    return m.max_isometric_force * (active + passive + curves.fiber_damping * v_norm)


def rigid_force(muscles: MuscleSet, curves: CurveParams, activation, lengths, arms, omega,
                gradient: bool = False):
    """Rigid-tendon muscle-tendon forces (N), shape (..., M), from activation (..., M), the
    lengths l_MT and moment arms r (m, (..., M)) and the joint velocity omega (rad/s, (...)).

    With ``gradient``, also d F / d omega (N·s/rad): the force-velocity (and fibre damping)
    slope, which the forward integrator treats implicitly.
    """
    m = muscles.like(lengths)
    vmt = -arms * (omega if is_scalar(omega) else omega[..., None])
    l_norm, v_norm, cos_phi = rigid_fiber_state(m, lengths, vmt)
    force = fiber_force(m, curves, activation, l_norm, v_norm) * cos_phi
    if not gradient:
        return force
    slope = activation * force_length_active(l_norm, curves.fl_width) * force_velocity_slope(
        v_norm, curves.fv_af, curves.fv_flen) + curves.fiber_damping
    return force, (m.max_isometric_force * slope * cos_phi**2 * -arms
                   / (m.max_contraction_velocity * m.optimal_fiber_length))


def hill_force(muscles: MuscleSet, curves: CurveParams, activation, theta, omega):
    """Rigid-tendon muscle-tendon forces (N), shape (..., M), from activation (..., M) and the
    joint angle theta (rad) and velocity omega (rad/s), both of shape (...)."""
    theta = like(theta, theta)
    lengths, arms = geometry(muscles, theta)
    return rigid_force(muscles, curves, activation, lengths, arms, like(omega, theta))


def compliant_geometry(muscles: MuscleSet, fiber_length, lmt_value):
    """cos(phi) and tendon strain of compliant units from fibre and muscle-tendon lengths (m)."""
    xp = namespace(fiber_length)
    m = muscles.like(fiber_length)
    height = m.optimal_fiber_length * xp.sin(m.pennation_angle)
    sin_phi = clip(height / fiber_length, max=(1.0 - _MIN_COS_PENNATION**2) ** 0.5)
    cos_phi = xp.sqrt(1.0 - sin_phi**2)
    tendon = lmt_value - fiber_length * cos_phi
    return cos_phi, (tendon - m.tendon_slack_length) / m.tendon_slack_length


def compliant_force(muscles: MuscleSet, fiber_length, lmt_value):
    """Tendon force (N) of compliant units, shape (..., M)."""
    m = muscles.like(fiber_length)
    _, strain = compliant_geometry(m, fiber_length, lmt_value)
    return m.max_isometric_force * tendon_force_length(strain, m.tendon_strain)


def compliant_fiber_velocity(muscles: MuscleSet, curves: CurveParams, activation, fiber_length,
                             lmt_value):
    """d l_M / dt (m/s) of compliant units: the velocity at which fibre and tendon forces agree.

    Activation and f_L are floored (0.01, 0.1) so the inverse force-velocity stays finite.
    """
    xp = namespace(fiber_length)
    m = muscles.like(fiber_length)
    cos_phi, strain = compliant_geometry(m, fiber_length, lmt_value)
    l_norm = fiber_length / m.optimal_fiber_length
    tendon = tendon_force_length(strain, m.tendon_strain)
    passive = force_length_passive(l_norm, m.passive_strain, m.passive_shape)
    drive = clip(activation, min=_MIN_ACTIVATION) * clip(
        force_length_active(l_norm, curves.fl_width), min=_MIN_FORCE_LENGTH)
    f_v = (tendon / cos_phi - passive) / drive
    v_norm = force_velocity_inverse(f_v, curves.fv_af, curves.fv_flen)
    return v_norm * m.max_contraction_velocity * m.optimal_fiber_length


def compliant_static_fiber_length(muscles: MuscleSet, curves: CurveParams, activation, lmt_value,
                                  iterations: int = 60):
    """Fibre length (m) at which a compliant unit is in static equilibrium (v_M = 0), numpy.

    Bisection on l_M between the pennation floor and l_MT - l_TS (+ l0 margin).
    """
    m = muscles.like(np.asarray(lmt_value, dtype=np.float64))
    lmt_value = np.asarray(lmt_value, dtype=np.float64)
    activation = np.broadcast_to(np.asarray(activation, dtype=np.float64), lmt_value.shape)
    height = m.optimal_fiber_length * np.sin(m.pennation_angle)
    lo = np.broadcast_to(height / (1.0 - _MIN_COS_PENNATION**2) ** 0.5 + 1e-9,
                         lmt_value.shape).copy()
    hi = np.maximum(lmt_value - m.tendon_slack_length, 0.0) + m.optimal_fiber_length * 3.0
    hi = np.broadcast_to(hi, lmt_value.shape).copy()
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        cos_phi, strain = compliant_geometry(m, mid, lmt_value)
        l_norm = mid / m.optimal_fiber_length
        fiber = activation * force_length_active(l_norm, curves.fl_width) + force_length_passive(
            l_norm, m.passive_strain, m.passive_shape)
        excess = tendon_force_length(strain, m.tendon_strain) - fiber * cos_phi
        # Tendon force falls and fibre force (past the pennation floor) grows with l_M.
        lo = np.where(excess > 0.0, mid, lo)
        hi = np.where(excess > 0.0, hi, mid)
    return 0.5 * (lo + hi)
