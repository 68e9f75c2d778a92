"""The physics-informed loss of the PI-CNN (after Zhang et al., IEEE TNSRE 31:484-493, 2023).

For predicted angle theta^ (B, K) and forces F^ (B, M, K) over a window's last K steps:

    L = w_theta·mean((theta^ - theta)^2)/s_theta^2
      + w_F·mean_i mean((F^_i - F_i)^2)/s_F,i^2                     (forces labelled)
      + w_M·mean((sum_i r_i(theta^) F^_i - M)^2)/s_M^2               (moment labelled)
      + lambda·mean(R^2)/s_tau^2                                       (physics)
      + w_H·mean_i mean((F^_i - F_Hill,i)^2)/s_F,i^2                 (Hill consistency)

R = I theta^'' + B theta^' + K(theta^ - theta0) + m g l_c sin(theta^ - theta_hang)
    - sum_i r_i(theta^) F^_i is the joint's equation-of-motion residual (N·m) from the preset
(:meth:`Preset.eom_residual`), with theta^' and theta^'' from central differences over the K
predicted steps (so R exists at the K - 2 interior steps). F_Hill is the preset's Hill model
driven by the activation of the same excitations at theta^, theta^'; its strength gains and
l0, l_TS may be learned within bounds (p = lo + (hi - lo)·sigmoid(w)). Each term is divided by
a scale from the training data (:class:`Scales`), so the weights are comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from emg_msk_ros.learning.windows import Batch
from emg_msk_ros.learning.settings import LossSettings
from emg_msk_ros.physics.muscle import MuscleSet
from emg_msk_ros.physics.preset import Preset


@dataclass(frozen=True)
class Scales:
    """Normalisation of the loss terms, from the training data (SI units)."""

    angle_mean: float  # rad, mean of the angle
    angle: float  # rad, std of the angle
    force: np.ndarray  # (M,) N, per-muscle force scale
    moment: float  # N·m, scale of the net muscle moment
    torque: float  # N·m, std of the torque the labelled motion requires (inverse dynamics)

    def to_mapping(self) -> dict:
        """Plain types for model.yaml."""
        return {"angle_mean_rad": float(self.angle_mean), "angle_rad": float(self.angle),
                "force_n": [float(f) for f in self.force], "moment_nm": float(self.moment),
                "torque_nm": float(self.torque)}


def central_differences(angle: torch.Tensor, dt: float):
    """(theta, theta', theta'') at the interior steps of angle (..., K): each (..., K - 2)."""
    before, mid, after = angle[..., :-2], angle[..., 1:-1], angle[..., 2:]
    return mid, (after - before) / (2.0 * dt), (after - 2.0 * mid + before) / dt**2


def _bounded_parameter(count: int, lo: float, hi: float) -> nn.Parameter | None:
    """Raw weights w with lo + (hi - lo)·sigmoid(w) = 1 at the start; None if lo == hi."""
    if hi <= lo:
        return None
    start = (1.0 - lo) / (hi - lo)
    return nn.Parameter(torch.full((count,), math.log(start / (1.0 - start))))


class PhysicsTerms(nn.Module):
    """The preset's joint and muscle equations on predicted trajectories (torch).

    ``learnable``: strength gains (x F0) and l0, l_TS scale factors become bounded parameters
    of the Hill model (they do not change the moment arms, which come from l_MT(theta)).
    """

    def __init__(self, preset: Preset, dt: float, settings: LossSettings,
                 learnable: bool = False) -> None:
        super().__init__()
        self.preset = preset
        self.dt = dt
        self.bounds = {
            "strength": (settings.strength_min, settings.strength_max),
            "fiber_length": (1.0 - settings.length_tolerance, 1.0 + settings.length_tolerance),
            "tendon_slack": (1.0 - settings.length_tolerance, 1.0 + settings.length_tolerance),
        }
        count = preset.muscles.count
        self.raw = nn.ParameterDict()
        if learnable:
            for name, (lo, hi) in self.bounds.items():
                parameter = _bounded_parameter(count, lo, hi)
                if parameter is not None:
                    self.raw[name] = parameter

    def factors(self) -> dict[str, torch.Tensor]:
        """Current scale factors (M,) of strength, l0 and l_TS (1 where not learned)."""
        out = {}
        for name, (lo, hi) in self.bounds.items():
            if name in self.raw:
                out[name] = lo + (hi - lo) * torch.sigmoid(self.raw[name])
            else:
                out[name] = torch.ones(self.preset.muscles.count)
        return out

    def muscles(self, reference: torch.Tensor) -> MuscleSet:
        """The preset's muscles with the current factors, as tensors like ``reference``."""
        f = self.factors()
        return self.preset.muscles.like(reference).scaled(
            f["strength"].to(reference), f["fiber_length"].to(reference),
            f["tendon_slack"].to(reference))

    def learned(self) -> dict[str, list[float]]:
        """Learned factors per muscle (empty when nothing is learned)."""
        return {name: [float(v) for v in value.detach()]
                for name, value in self.factors().items() if name in self.raw}

    def net_moment(self, angle: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
        """sum_i r_i(theta) F_i (N·m), (B, K), for angle (B, K) and force (B, M, K)."""
        return self.preset.muscle_torque(force.transpose(1, 2), angle)

    def residual(self, angle: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
        """Equation-of-motion residual (N·m), (B, K - 2), at the interior predicted steps."""
        theta, omega, alpha = central_differences(angle, self.dt)
        return self.preset.eom_residual(theta, omega, alpha, force[..., 1:-1].transpose(1, 2))

    def hill_forces(self, activation: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
        """Hill forces (N), (B, M, K - 2), from activation (B, M, K) at the predicted motion.

        The muscle geometry is taken at the angle clipped to the joint's range, as inference
        does: outside it the fitted lengths extrapolate and the passive force overflows."""
        theta, omega, _ = central_differences(angle, self.dt)
        theta = self.preset.clip_angle(theta)
        forces = self.preset.muscle_forces(activation[..., 1:-1].transpose(1, 2), theta, omega,
                                           muscles=self.muscles(theta))
        return forces.transpose(1, 2)


def loss_weights(settings: LossSettings, physics: bool, forces_labelled: bool
                 ) -> dict[str, float]:
    """Weight of each loss term: the force term only with force labels, the physics and Hill
    terms only with ``physics``, Hill at the weight of the sessions' mode."""
    return {
        "angle": settings.angle_weight,
        "force": settings.force_weight if forces_labelled else 0.0,
        "moment": settings.moment_weight,
        "physics": settings.physics_weight if physics else 0.0,
        "hill": (settings.hill_weight if forces_labelled
                 else settings.hill_weight_unlabelled) if physics else 0.0,
    }


class PILoss(nn.Module):
    """Weighted, normalised sum of the data and physics terms (module docstring).

    ``physics=False`` gives the data-only baseline: the same data terms, no physics terms.
    """

    def __init__(self, terms: PhysicsTerms, scales: Scales, settings: LossSettings,
                 physics: bool, forces_labelled: bool) -> None:
        super().__init__()
        self.terms = terms
        self.physics = physics
        self.weights = loss_weights(settings, physics, forces_labelled)
        self.register_buffer("angle_scale", torch.tensor(scales.angle, dtype=torch.float32))
        self.register_buffer("force_scale", torch.as_tensor(
            np.asarray(scales.force).reshape(-1, 1), dtype=torch.float32))
        self.register_buffer("moment_scale", torch.tensor(scales.moment, dtype=torch.float32))
        self.register_buffer("torque_scale", torch.tensor(scales.torque, dtype=torch.float32))

    def forward(self, output: torch.Tensor, batch: Batch, physics_weight: float | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its (unweighted) terms; ``physics_weight`` overrides lambda (warm-up)."""
        angle, force = output[:, 0], output[:, 1:]
        terms: dict[str, torch.Tensor] = {
            "angle": (((angle - batch.angle) / self.angle_scale) ** 2).mean()}
        if self.weights["force"] > 0 and batch.force is not None:
            terms["force"] = (((force - batch.force) / self.force_scale) ** 2).mean()
        if self.weights["moment"] > 0 and batch.moment is not None:
            moment = self.terms.net_moment(angle, force)
            terms["moment"] = (((moment - batch.moment) / self.moment_scale) ** 2).mean()
        if self.weights["physics"] > 0:
            residual = self.terms.residual(angle, force)
            terms["physics"] = ((residual / self.torque_scale) ** 2).mean()
        if self.weights["hill"] > 0:
            hill = self.terms.hill_forces(batch.activation, angle)
            terms["hill"] = (((force[..., 1:-1] - hill) / self.force_scale) ** 2).mean()
        weights = dict(self.weights)
        if physics_weight is not None and self.physics:
            weights["physics"] = physics_weight
        total = sum(weights[name] * value for name, value in terms.items())
        return total, {name: float(value.detach()) for name, value in terms.items()}
