"""The PI-CNN: a small causal, dilated 1-D CNN from a window of excitations to the newest K
steps of joint angle and muscle forces (ReLU between convolutions: at this size the
per-operator cost sets the inference time, and ReLU is the cheapest).

Input ``x`` (B, C, W): excitations 0..1, channels in muscle order, oldest sample first.
Output (B, 1 + M, K): row 0 the joint angle (rad), rows 1..M the muscle forces (N, >= 0), at
the window's last K steps (column K-1 = the newest sample).

All convolutions are unpadded ("valid"), so output step k depends only on the R input samples
that end at it (R = receptive field). Hence W = R - 1 + K, and predictions for the same instant
from two overlapping windows are identical: K consecutive outputs form one trajectory that
can be differentiated in time (velocity, acceleration) for the equation of motion.

Scaling lives inside the module (angle = mean + scale·z, force = F_scale·softplus(z)), so the
exported model (TorchScript ``model.pt``, ONNX ``model.onnx``) takes excitations and gives
physical units directly. :meth:`PICNN.onnx_io` names the exported graph's input and outputs
(the contract every model kind meets: :mod:`emg_msk_ros.learning.runtime`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from emg_msk_ros.learning.settings import ModelSettings, window_length


def dilated_body(channels: int, settings: ModelSettings) -> nn.Sequential:
    """The unpadded causal convolutions: ``settings.levels`` of them, dilations 1, 2, 4, ...,
    ``settings.hidden`` features each, ReLU after each; ``channels`` inputs."""
    layers: list[nn.Module] = []
    width = channels
    for level in range(settings.levels):
        layers += [nn.Conv1d(width, settings.hidden, settings.kernel, dilation=2**level),
                   nn.ReLU()]
        width = settings.hidden
    return nn.Sequential(*layers)


class PICNN(nn.Module):
    """Causal dilated CNN with angle and force heads; see the module docstring."""

    def __init__(self, n_channels: int, n_muscles: int, settings: ModelSettings,
                 angle_mean: float = 0.0, angle_scale: float = 1.0,
                 force_scale: torch.Tensor | None = None) -> None:
        super().__init__()
        if n_channels < 1 or n_muscles < 1:
            raise ValueError(f"need >= 1 channel and muscle, got {n_channels}, {n_muscles}")
        self.body = dilated_body(n_channels, settings)
        width = settings.hidden
        self.head = nn.Conv1d(width, 1 + n_muscles, 1)
        self.n_channels = n_channels
        self.n_muscles = n_muscles
        self.horizon = settings.horizon
        self.window = window_length(settings)
        self.register_buffer("angle_mean", torch.tensor(float(angle_mean)))
        self.register_buffer("angle_scale", torch.tensor(float(angle_scale)))
        scale = torch.ones(n_muscles) if force_scale is None else torch.as_tensor(
            force_scale, dtype=torch.float32)
        if scale.shape != (n_muscles,):
            raise ValueError(f"force_scale must have shape ({n_muscles},), "
                             f"got {tuple(scale.shape)}")
        self.register_buffer("force_scale", scale.reshape(n_muscles, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, W) excitations -> (B, 1 + M, K): angle (rad) and forces (N)."""
        z = self.head(self.body(x))
        angle = self.angle_mean + self.angle_scale * z[:, :1]
        force = self.force_scale * functional.softplus(z[:, 1:])
        return torch.cat([angle, force], dim=1)

    def onnx_io(self) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
        """The exported graph's inputs, name -> (channels, steps), in ``forward``'s argument
        order, and outputs, name -> (rows, K), the blocks of ``forward``'s (B, 1 + M, K) result
        in row order."""
        return ({"excitation": (self.n_channels, self.window)},
                {"angle": (1, self.horizon), "force": (self.n_muscles, self.horizon)})


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
