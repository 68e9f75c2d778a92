"""Windows for the state-aided model: excitation and measured joint state in, labels now and
``ahead`` steps into the future (the forces now only; see :mod:`.state_loss`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from emg_msk_ros.learning.dataset import DataError, Segment, Trial
from emg_msk_ros.learning.windows import WindowSet


@dataclass
class StateBatch:
    """Inputs and labels of a batch of state-aided windows (torch, float32)."""

    x: torch.Tensor  # (B, C, W) excitation less its resting level
    joint: torch.Tensor  # (B, 2, W) measured angle (rad) and velocity (rad/s)
    angle: torch.Tensor  # (B, H+1, K) true angle (rad) at t + h
    activation: torch.Tensor  # (B, M, K) at t
    force: torch.Tensor | None  # (B, M, K) N at t
    moment: torch.Tensor | None  # (B, H+1, K) N·m at t + h

    @property
    def inputs(self) -> tuple[torch.Tensor, ...]:
        """The model's positional inputs (excitation, joint_state)."""
        return self.x, self.joint


class StateWindowSet(WindowSet):
    """:class:`~.windows.WindowSet` whose windows also carry the joint state and whose labels
    reach ``ahead`` steps past each output step (segments end ``ahead`` steps early, so the
    future labels stay inside the segment)."""

    def __init__(self, trials: Sequence[Trial], segments: Sequence[Sequence[Segment]],
                 window: int, horizon: int, ahead: int, stride: int = 1) -> None:
        if any(t.joint_state is None for t in trials):
            raise DataError("every session of a state-aided model needs the joint states")
        shrunk = [[(a, b - ahead) for a, b in segs if b - ahead > a] for segs in segments]
        super().__init__(trials, shrunk, window, horizon, stride)
        self.ahead = ahead
        self.trials = tuple(trials)
        self._state = torch.as_tensor(np.concatenate([t.joint_state for t in trials]),
                                      dtype=torch.float32)
        self._ahead_offsets = torch.arange(ahead + 1)

    def batch(self, positions: torch.Tensor) -> StateBatch:
        """The windows at ``positions`` (indices into this set)."""
        ends = self.ends[positions]
        rows_in = ends[:, None] + self._in_offsets  # (B, W)
        rows_out = ends[:, None] + self._out_offsets  # (B, K)
        rows_ahead = rows_out[:, None, :] + self._ahead_offsets[None, :, None]  # (B, H+1, K)
        return StateBatch(
            x=self._x[rows_in].transpose(1, 2),
            joint=self._state[rows_in].transpose(1, 2),
            angle=self._angle[rows_ahead],
            activation=self._activation[rows_out].transpose(1, 2),
            force=None if self._force is None else self._force[rows_out].transpose(1, 2),
            moment=None if self._moment is None else self._moment[rows_ahead],
        )

    def state_scales(self, dt: float) -> tuple[float, float]:
        """(velocity rad/s, step rad): the spread of the measured velocity and of the error of
        constant-velocity extrapolation from the measured state at each window's end to the
        true angle max(H, 1) steps (of ``dt`` s) later."""
        rows = self.ends
        lead = max(self.ahead, 1)
        later = torch.clamp(rows + lead, max=len(self._angle) - 1)
        extrapolated = self._state[rows, 0] + self._state[rows, 1] * (lead * dt)
        step = (self._angle[later] - extrapolated).numpy().astype(np.float64)
        velocity = self._state[rows, 1].numpy().astype(np.float64)
        return float(np.std(velocity)) or 1.0, float(np.std(step)) or 1e-3
