"""Hill-type muscle and tendon curves of Thelen (2003), written once for numpy and torch.

Lengths are normalised by the optimal fibre length l0 (l~ = l_M / l0), velocities by v_max·l0
(v~, negative = shortening), forces by the maximum isometric force F0. Parameters broadcast
against the inputs, so per-muscle arrays of shape (M,) work on inputs of shape (..., M).

Reference: D. G. Thelen, "Adjustment of muscle mechanics model parameters to simulate dynamic
contractions in older adults", J. Biomech. Eng. 125:70-77 (2003), as in OpenSim's
Thelen2003Muscle. Defaults: active force-length width 0.45, concentric curvature A_f = 0.25,
eccentric plateau F_len = 1.4; passive k_PE = 5 with fibre strain 0.6 at F0; tendon strain
0.04 at F0 with toe shape 3, toe force 0.333 F0 at 0.609 of that strain, linear stiffness
1.712 / strain. Simplification: the activation-dependent v_max scaling (0.25 + 0.75a) of
Thelen's force-velocity relation is left out, so f_V depends on velocity only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from emg_msk_ros.physics.backend import clip, like, namespace

TENDON_TOE_SHAPE = 3.0  # k_toe, Thelen 2003
TENDON_TOE_FORCE = 0.333  # F_toe / F0, Thelen 2003
TENDON_TOE_STRAIN = 0.609  # strain at the end of the toe / strain at F0, Thelen 2003
TENDON_LINEAR_STIFFNESS = 1.712  # k_lin · strain at F0, Thelen 2003
# The eccentric inverse force-velocity is singular at F_len; above this fraction of F_len it
# continues linearly with the slope there (Thelen 2003 does the same).
INVERSE_LINEAR_FROM = 0.95


@dataclass(frozen=True)
class CurveParams:
    """Curve constants shared by all muscles of a preset (Thelen 2003 defaults)."""

    fl_width: float = 0.45  # gamma of the active force-length Gaussian
    fv_af: float = 0.25  # A_f, concentric force-velocity curvature
    fv_flen: float = 1.4  # F_len, eccentric plateau (x F0)
    fiber_damping: float = 0.0  # beta, parallel fibre damping (F0 per unit v~); none in Thelen


def force_length_active(l_norm, width=0.45):
    """f_L(l~) = exp(-(l~ - 1)^2 / width); 1 at the optimal fibre length."""
    xp = namespace(l_norm)
    return xp.exp(-((l_norm - 1.0) ** 2) / width)


def force_length_passive(l_norm, strain=0.6, shape=5.0):
    """f_PE(l~) = (exp(k_PE (l~ - 1) / strain) - 1) / (exp(k_PE) - 1) for l~ > 1, else 0.

    ``strain`` is the passive fibre strain at which f_PE = 1, ``shape`` is k_PE.
    """
    xp = namespace(l_norm, strain, shape)
    stretch = clip(l_norm - 1.0, min=0.0)
    return xp.expm1(shape * stretch / strain) / xp.expm1(like(shape, l_norm))


def _eccentric_rate(af, flen):
    """c of the eccentric branch f = (1 + c·F_len·v) / (1 + c·v), whose slope at v = 0,
    c·(F_len - 1) = 2·(1 + 1/A_f), is twice the concentric one (Thelen 2003)."""
    return (2.0 + 2.0 / af) / (flen - 1.0)


def force_velocity(v_norm, af=0.25, flen=1.4):
    """f_V(v~): Hill's hyperbola (1 + v~)/(1 - v~/A_f) when shortening (0 at v~ <= -1), and
    (1 + c·F_len·v~)/(1 + c·v~) when lengthening, rising to the plateau F_len."""
    xp = namespace(v_norm)
    shortening = clip(v_norm, min=-1.0, max=0.0)
    lengthening = clip(v_norm, min=0.0)
    c = _eccentric_rate(af, flen)
    concentric = (1.0 + shortening) / (1.0 - shortening / af)
    eccentric = (1.0 + c * flen * lengthening) / (1.0 + c * lengthening)
    return xp.where(v_norm > 0.0, eccentric, concentric)


def force_velocity_slope(v_norm, af=0.25, flen=1.4):
    """d f_V / d v~ (0 below v~ = -1, where f_V is clamped at 0; concentric value at 0)."""
    xp = namespace(v_norm)
    shortening = clip(v_norm, min=-1.0, max=0.0)
    lengthening = clip(v_norm, min=0.0)
    c = _eccentric_rate(af, flen)
    concentric = (1.0 + 1.0 / af) / (1.0 - shortening / af) ** 2
    eccentric = c * (flen - 1.0) / (1.0 + c * lengthening) ** 2
    slope = xp.where(v_norm > 0.0, eccentric, concentric)
    return xp.where(v_norm < -1.0, 0.0 * slope, slope)


def force_velocity_inverse(f_v, af=0.25, flen=1.4):
    """v~ for a force-velocity multiplier: the inverse of :func:`force_velocity`.

    f_V <= 0 gives -1 (maximum shortening); above 0.95 F_len the eccentric branch continues
    linearly with its slope there, so the inverse is finite for any force.
    """
    xp = namespace(f_v)
    c = _eccentric_rate(af, flen)
    cap = INVERSE_LINEAR_FROM * flen
    low = clip(f_v, min=0.0, max=1.0)
    high = clip(f_v, min=1.0, max=cap)
    concentric = (low - 1.0) / (1.0 + low / af)
    eccentric = (high - 1.0) / (c * (flen - high))
    slope_at_cap = (flen - 1.0) / (c * (flen - cap) ** 2)
    eccentric = eccentric + slope_at_cap * clip(f_v - cap, min=0.0)
    return xp.where(f_v <= 1.0, concentric, eccentric)


def tendon_force_length(strain, strain_at_f0=0.04):
    """f_T(strain): 0 when slack, exponential toe up to 0.609·strain_at_f0 (0.333 F0 there),
    then linear with stiffness 1.712 / strain_at_f0, reaching ~1 at ``strain_at_f0``."""
    xp = namespace(strain, strain_at_f0)
    toe_end = like(TENDON_TOE_STRAIN * strain_at_f0, strain)
    stretched = clip(strain, min=0.0)
    toe_strain = xp.minimum(stretched, toe_end)
    toe = TENDON_TOE_FORCE * xp.expm1(TENDON_TOE_SHAPE * toe_strain / toe_end) / math.expm1(
        TENDON_TOE_SHAPE)
    return toe + TENDON_LINEAR_STIFFNESS / strain_at_f0 * (stretched - toe_strain)
