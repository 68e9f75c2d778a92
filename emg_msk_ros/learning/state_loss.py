"""The physics-informed loss of the state-aided PI-CNN (:mod:`.state_model`).

For each output step t of a window, with theta_m the measured angle, theta^(t + h) and
F^(t + h) (h = 0..H) the predicted angle and forces, and F^_0 the forces the network gives for
"now" at every step:

    L = w_theta·mean((theta^ - theta)^2)/s_step^2                  (angle now and ahead)
      + w_F·mean_i mean((F^_0,i - F_i)^2)/s_F,i^2                  (forces labelled, now)
      + w_M·mean((sum_i r_i(theta^) F^_i - M)^2)/s_M^2              (moment labelled, all h)
      + lambda·mean(R^2)/s_tau^2                                     (equation of motion)
      + w_H·mean_i mean((F^_0,i - F_Hill,i)^2)/s_F,i^2              (Hill consistency)

R is the joint's equation-of-motion residual (:meth:`PhysicsTerms.residual`) over the
trajectory the forces must explain: the measured past (theta_m at the window's K newest steps
with F^_0 there) and, from each step t, the predicted future (theta_m at t - 1 and t, then
theta^(t + 1 .. t + H), with F^_0(t - 1) and F^(t .. t + H)). F_Hill is the preset's Hill model
driven by the activation of the excitations at the measured angle and its velocity. s_step is
the training data's spread of the H-step angle change; the other scales are the EMG-only
model's (:class:`~.loss.Scales`). The angle term has no gradient: the motion branch is solved
before training (:mod:`.kernel_motion`); it stays in the loss as the reported prediction error.

The force labels supervise the forces now, the ones the estimator publishes; the forces ahead
answer to the equation of motion and the moment alone. Labelled at every h, they spent the
network on forces the EMG cannot foretell (simulated knee, ten 30 s training sessions, two held
out: force NRMSE now 5.2 % labelled at every h, 5.0 % with half the term on h = 0, 3.9 % with
the labels on h = 0 only).
"""

from __future__ import annotations

import torch
from torch import nn

from emg_msk_ros.learning.loss import PhysicsTerms, Scales, loss_weights
from emg_msk_ros.learning.settings import LossSettings
from emg_msk_ros.learning.state_data import StateBatch


def future_trajectory(measured: torch.Tensor, angle: torch.Tensor, force: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """From each output step t >= 1: angles (B·(K-1), H + 2) = theta_m(t-1), theta_m(t),
    theta^(t+1..t+H) and forces (B·(K-1), M, H + 2) = F^_0(t-1), F^(t..t+H).

    ``measured`` (B, K) rad, ``angle`` (B, H+1, K) rad, ``force`` (B, M, H+1, K) N."""
    batch, muscles, offsets, steps = force.shape
    angles = torch.cat([measured[:, :-1, None], measured[:, 1:, None],
                        angle[:, 1:, 1:].transpose(1, 2)], dim=2)
    forces = torch.cat([force[:, :, 0, :-1, None], force[:, :, :, 1:].transpose(2, 3)], dim=3)
    return (angles.reshape(batch * (steps - 1), offsets + 1),
            forces.transpose(1, 2).reshape(batch * (steps - 1), muscles, offsets + 1))


class StateLoss(nn.Module):
    """Weighted, normalised sum of the data and physics terms (module docstring);
    ``physics=False`` keeps only the data terms (the baseline without physics)."""

    def __init__(self, terms: PhysicsTerms, scales: Scales, step_scale: float,
                 settings: LossSettings, physics: bool, forces_labelled: bool) -> None:
        super().__init__()
        self.terms = terms
        self.physics = physics
        self.weights = loss_weights(settings, physics, forces_labelled)
        self.register_buffer("step_scale", torch.tensor(step_scale, dtype=torch.float32))
        self.register_buffer("force_scale", torch.as_tensor(
            scales.force, dtype=torch.float32).reshape(-1, 1))
        self.register_buffer("moment_scale", torch.tensor(scales.moment, dtype=torch.float32))
        self.register_buffer("torque_scale", torch.tensor(scales.torque, dtype=torch.float32))

    def forward(self, output: tuple[torch.Tensor, torch.Tensor], batch: StateBatch,
                physics_weight: float | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its (unweighted) terms; ``physics_weight`` overrides lambda."""
        angle, force = output
        steps = angle.shape[2]
        measured = batch.joint[:, 0, -steps:]
        now = force[:, :, 0]  # (B, M, K)
        terms: dict[str, torch.Tensor] = {
            "angle": (((angle - batch.angle) / self.step_scale) ** 2).mean()}
        if self.weights["force"] > 0 and batch.force is not None:
            terms["force"] = (((now - batch.force) / self.force_scale) ** 2).mean()
        if self.weights["moment"] > 0 and batch.moment is not None:
            moment = self.terms.preset.muscle_torque(force.permute(0, 2, 3, 1), angle)
            terms["moment"] = (((moment - batch.moment) / self.moment_scale) ** 2).mean()
        if self.weights["physics"] > 0:
            past = self.terms.residual(measured, now)
            future = self.terms.residual(*future_trajectory(measured, angle, force))
            residual = torch.cat([past.reshape(-1), future.reshape(-1)])
            terms["physics"] = ((residual / self.torque_scale) ** 2).mean()
        if self.weights["hill"] > 0:
            hill = self.terms.hill_forces(batch.activation, measured)
            terms["hill"] = (((now[..., 1:-1] - hill) / self.force_scale) ** 2).mean()
        weights = dict(self.weights)
        if physics_weight is not None and self.physics:
            weights["physics"] = physics_weight
        total = sum(weights[name] * value for name, value in terms.items())
        return total, {name: float(value.detach()) for name, value in terms.items()}
