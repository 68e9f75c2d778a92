"""Training windows as torch batches: the windows of :mod:`.dataset`'s trials, gathered by
index (see :mod:`.dataset` for what a window holds and how sessions are split)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from emg_msk_ros.learning.dataset import DataError, Segment, Trial, window_ends


@dataclass
class Batch:
    """Model inputs and labels of a batch of windows (torch, float32)."""

    x: torch.Tensor  # (B, M, W) network input (excitation minus baseline), oldest first
    angle: torch.Tensor  # (B, K) rad
    activation: torch.Tensor  # (B, M, K)
    force: torch.Tensor | None  # (B, M, K) N
    moment: torch.Tensor | None  # (B, K) N·m

    @property
    def inputs(self) -> tuple[torch.Tensor, ...]:
        """The model's positional inputs."""
        return (self.x,)


class WindowSet:
    """Windows over several trials, cut inside the given segments of each.

    Arrays of all trials are concatenated once; a batch gathers its windows by index.
    """

    def __init__(self, trials: Sequence[Trial], segments: Sequence[Sequence[Segment]],
                 window: int, horizon: int, stride: int = 1) -> None:
        if len(trials) != len(segments):
            raise ValueError("one list of segments per trial is needed")
        if not trials:
            raise DataError("no sessions given")
        self.window, self.horizon = window, horizon
        offsets = np.cumsum([0] + [len(t) for t in trials])
        self.ends = torch.as_tensor(np.concatenate(
            [window_ends(segs, window, stride) + off for segs, off in zip(segments, offsets)]),
            dtype=torch.long)
        self.has_force = all(t.force is not None for t in trials)
        self.has_moment = all(t.moment is not None for t in trials)
        if any(t.angle is None for t in trials):
            raise DataError("every training session needs a joint angle")

        def cat(name: str) -> torch.Tensor:
            return torch.as_tensor(np.concatenate([getattr(t, name) for t in trials]),
                                   dtype=torch.float32)

        self._x = cat("inputs")
        self._activation = cat("activation")
        self._angle = cat("angle")
        self._force = cat("force") if self.has_force else None
        self._moment = cat("moment") if self.has_moment else None
        self._in_offsets = torch.arange(-window + 1, 1)
        self._out_offsets = torch.arange(-horizon + 1, 1)

    def __len__(self) -> int:
        return int(self.ends.shape[0])

    @property
    def n_channels(self) -> int:
        """Input channels C."""
        return int(self._x.shape[1])

    def batch(self, positions: torch.Tensor) -> Batch:
        """The windows at ``positions`` (indices into this set)."""
        ends = self.ends[positions]
        rows_in = ends[:, None] + self._in_offsets  # (B, W)
        rows_out = ends[:, None] + self._out_offsets  # (B, K)
        return Batch(
            x=self._x[rows_in].transpose(1, 2),
            angle=self._angle[rows_out],
            activation=self._activation[rows_out].transpose(1, 2),
            force=None if self._force is None else self._force[rows_out].transpose(1, 2),
            moment=None if self._moment is None else self._moment[rows_out],
        )

    def label_arrays(self) -> dict[str, np.ndarray]:
        """The labels at the newest step of every window (for normalisation statistics)."""
        rows = self.ends
        out = {"angle": self._angle[rows].numpy().astype(np.float64)}
        if self._force is not None:
            out["force"] = self._force[rows].numpy().astype(np.float64)
        if self._moment is not None:
            out["moment"] = self._moment[rows].numpy().astype(np.float64)
        return out
