"""The state-aided PI-CNN: EMG plus the exoskeleton's measured joint state, the joint predicted
``ahead`` steps into the future.

Inputs (named, fixed rank; ONNX-exportable plain ops):

- ``excitation`` (B, C, W): the excitation window less its resting level (as the EMG-only
  :class:`~emg_msk_ros.learning.model.PICNN`), oldest first;
- ``joint_state`` (B, 2, W): the joint sensor's angle (rad) and velocity (rad/s) held at each of
  the same W steps (:mod:`.joint_input`).

Outputs, at each of the window's newest K steps t (the convolutions are unpadded, as in PICNN,
so step t depends only on the inputs up to t) and each offset h = 0..H (H = ``ahead`` steps):

- ``angle`` (B, H + 1, K): the joint angle at t + h (rad): constant-velocity extrapolation
  from the measured state at t (theta_m + omega_m·h·dt) plus the motion branch's correction;
- ``force`` (B, M, H + 1, K): the muscle forces at t + h (N, >= 0: F_scale·softplus).

Two branches:

- the force branch, the PICNN's dilated body over the excitation and three joint-state
  features: the angle, the velocity (both normalised by the training data's spread) and the
  angle's change per step divided by dt (rad/s; the first step takes the measured velocity),
  whose differences of the encoder's fine-grained angle carry the velocity and acceleration
  with less noise than the sensor's own differentiated velocity;
- the motion branch (:mod:`.kernel_motion`): kernel ridge regression on a compact state of the
  last 12 steps (angle, velocity and acceleration, excitation now and 5 steps before), solved
  in closed form on the training and validation windows before the network trains, and fixed
  while it does.

The physics-informed loss (:mod:`.state_loss`) ties the forces to the measured past and the
predicted future motion through the joint's equation of motion and to the EMG through Hill.
The motion branch has no trained weights, so the equation of motion shapes the forces, not the
prediction: trained through it, the previous motion branch (a small network over 20 steps of
joint state) predicted UCI seated extensions worse with the physics terms than without them
(median file 0.97x and 0.84x constant velocity's error; :mod:`.kernel_motion`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from emg_msk_ros.learning.kernel_motion import KernelMotion
from emg_msk_ros.learning.metadata import STATE_CHANNELS
from emg_msk_ros.learning.model import dilated_body
from emg_msk_ros.learning.settings import ModelSettings, window_length

INPUT_NAMES = ("excitation", "joint_state")
OUTPUT_NAMES = ("angle", "force")
_FEATURES = 3  # angle, velocity, angle change per step


class StateAidedPICNN(nn.Module):
    """Causal dilated CNN over excitation and joint state; see the module docstring."""

    def __init__(self, n_channels: int, n_muscles: int, settings: ModelSettings, ahead: int,
                 dt: float, angle_mean: float = 0.0, angle_scale: float = 1.0,
                 velocity_scale: float = 1.0, force_scale: torch.Tensor | None = None) -> None:
        super().__init__()
        if n_channels < 1 or n_muscles < 1:
            raise ValueError(f"need >= 1 channel and muscle, got {n_channels}, {n_muscles}")
        if ahead < 0:
            raise ValueError(f"ahead must be >= 0 steps, got {ahead}")
        self.body = dilated_body(n_channels + _FEATURES, settings)
        width = settings.hidden
        self.offsets = ahead + 1
        self.head = nn.Conv1d(width, n_muscles * self.offsets, 1)
        self.n_channels = n_channels
        self.n_muscles = n_muscles
        self.ahead = ahead
        self.horizon = settings.horizon
        self.window = window_length(settings)
        self.motion = KernelMotion(n_channels, self.offsets, dt)
        if self.motion.reach > self.window - self.horizon + 1:
            raise ValueError(f"the window of {self.window} steps is too short for the motion "
                             f"branch's {self.motion.reach} steps of history")
        self.register_buffer("angle_mean", torch.tensor(float(angle_mean)))
        self.register_buffer("angle_scale", torch.tensor(float(angle_scale)))
        self.register_buffer("velocity_scale", torch.tensor(float(velocity_scale)))
        # s from the measured state to each offset h: h·dt
        self.register_buffer("dt", torch.tensor(float(dt)))
        self.register_buffer("lead", (dt * torch.arange(self.offsets, dtype=torch.float32)
                                      ).reshape(self.offsets, 1))
        scale = torch.ones(n_muscles) if force_scale is None else torch.as_tensor(
            force_scale, dtype=torch.float32)
        if scale.shape != (n_muscles,):
            raise ValueError(f"force_scale must have shape ({n_muscles},), "
                             f"got {tuple(scale.shape)}")
        self.register_buffer("force_scale", scale.reshape(n_muscles, 1, 1).clone())

    def forward(self, excitation: torch.Tensor, joint_state: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, W) excitation, (B, 2, W) joint state -> angle (B, H+1, K) rad, force
        (B, M, H+1, K) N."""
        angle, velocity = joint_state[:, 0:1], joint_state[:, 1:2]
        step = torch.cat([velocity[:, :, :1] * self.dt, angle[:, :, 1:] - angle[:, :, :-1]],
                         dim=2) / (self.dt * self.velocity_scale)
        kinematics = torch.cat([(angle - self.angle_mean) / self.angle_scale,
                                velocity / self.velocity_scale, step], dim=1)
        z = self.head(self.body(torch.cat([excitation, kinematics], dim=1)))
        steps = z.shape[2]
        newest = joint_state[:, :, joint_state.shape[2] - steps:]  # (B, 2, K)
        extrapolated = newest[:, 0:1] + self.lead * newest[:, 1:2]  # (B, H+1, K)
        recent = steps + self.motion.reach - 1
        predicted = extrapolated + self.motion(excitation[:, :, -recent:],
                                               joint_state[:, :, -recent:])
        force_z = z.reshape(z.shape[0], self.n_muscles, self.offsets, steps)
        return predicted, self.force_scale * functional.softplus(force_z)

    def onnx_io(self) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
        """The exported graph's inputs, name -> shape, in ``forward``'s argument order, and
        outputs, name -> shape, in the order ``forward`` returns them (shapes without the batch
        axis; the contract of :mod:`emg_msk_ros.learning.runtime`)."""
        excitation, joint_state = INPUT_NAMES
        angle, force = OUTPUT_NAMES
        return ({excitation: (self.n_channels, self.window),
                 joint_state: (STATE_CHANNELS, self.window)},
                {angle: (self.offsets, self.horizon),
                 force: (self.n_muscles, self.offsets, self.horizon)})
