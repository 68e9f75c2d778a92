"""The state-aided model's motion branch: kernel ridge regression on a compact causal state, as
a network layer whose readout is solved in closed form before the network trains.

At each step t the branch reads a compact state (raw units in, standardised by the fitting
data's mean and spread):

- the measured angle (rad) and velocity (rad/s) held at t;
- the angle's velocity (rad/s) and acceleration (rad/s^2) at t from least-squares quadratic fits
  over its last 5, 8 and 12 steps (fixed causal filters);
- the excitation of every channel at t and ``EXCITATION_LAGS`` steps before;

each clamped to ``STATE_LIMIT`` spreads of the fitting data.

It returns the correction to constant-velocity extrapolation at each offset h = 0..H (rad): a
linear readout of random Fourier features of the state, which approximate a Gaussian kernel of
width set by ``gamma`` (Rahimi and Recht, NIPS 2007), plus the state itself (a linear kernel).
:meth:`KernelMotion.fit` solves the readout by ridge regression on the training and validation
windows, and chooses ``gamma`` and the ridge by blocked cross-validation inside them. The result
is kernel ridge regression, in plain ops that ONNX exports.

Why not a trained network: on the UCI seated knee extensions (``bench ahead``, a model per file
from 10-13 s of data), the 20-step motion network trained with the physics terms came to
0.97x constant velocity's error on the median file, 0.84x without physics terms, and its
settings could not be chosen on 2-3 s of validation data; kernel ridge on this state, chosen by
cross-validation inside the training part, came to 0.64-0.66x in numpy (three draws of the
random features) and to 0.64x in the model (median file 0.73 deg against 1.15 deg). On the
simulated knee, whose ten 30 s training sessions suit a trained network better, it gave 0.40
deg against the network's 0.35 deg (constant velocity 0.62 deg).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.linalg
import torch
from torch import nn

FIT_STEPS = (5, 8, 12)  # steps of the angle each quadratic fit spans
EXCITATION_LAGS = (0, 5)  # steps before t at which the excitation is read
RANDOM_FEATURES = 1024
GAMMAS = (0.03, 0.1, 0.3, 1.0, 3.0)  # kernel exp(-gamma·|z - z'|^2 / d), z standardised
RIDGES = (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3)  # per sample (the penalty is n·ridge·|w|^2)
FOLDS = 5
STATE_LIMIT = 10.0  # standardised state features are clamped to +-this many spreads
_SEED = 0  # the random directions are fixed: a model's layout, not its training, draws them


def fit_filters(dt: float) -> np.ndarray:
    """(2·len(FIT_STEPS), reach) causal filters, oldest tap first: velocity (rad/s) and
    acceleration (rad/s^2) at the newest step of a quadratic fitted to the last m angles."""
    reach = max(FIT_STEPS)
    rows = []
    for m in FIT_STEPS:
        lag = dt * np.arange(-(m - 1), 1)  # s, oldest first
        design = np.stack([np.ones(m), lag, lag ** 2 / 2], axis=1)
        solve = np.linalg.pinv(design)  # (3, m): angle, velocity, acceleration
        for row in (1, 2):
            taps = np.zeros(reach)
            taps[reach - m:] = solve[row]
            rows.append(taps)
    return np.stack(rows)


class KernelMotion(nn.Module):
    """Correction (rad) to constant-velocity extrapolation at offsets 0..H, from the compact
    state of the module docstring; every tensor is a buffer (solved by :meth:`fit`)."""

    def __init__(self, n_channels: int, offsets: int, dt: float) -> None:
        super().__init__()
        self.n_channels = n_channels
        self.offsets = offsets
        self.reach = max(max(FIT_STEPS), max(EXCITATION_LAGS) + 1)  # steps read per output
        self.size = 2 + 2 * len(FIT_STEPS) + n_channels * len(EXCITATION_LAGS)
        self.lags = list(EXCITATION_LAGS)
        self.wave_scale = math.sqrt(2.0 / RANDOM_FEATURES)  # cos features: E[phi·phi'] = kernel
        self.state_scale = 1.0 / math.sqrt(self.size)
        self.limit = STATE_LIMIT
        filters = torch.as_tensor(fit_filters(dt), dtype=torch.float32)
        self.register_buffer("filters", filters.unsqueeze(1))  # (2F, 1, reach)
        self.register_buffer("mean", torch.zeros(self.size, 1))
        self.register_buffer("spread", torch.ones(self.size, 1))
        generator = torch.Generator().manual_seed(_SEED)
        self.register_buffer("directions", torch.randn(RANDOM_FEATURES, self.size,
                                                       generator=generator))
        self.register_buffer("phases", 2 * math.pi * torch.rand(RANDOM_FEATURES, 1,
                                                                generator=generator))
        self.register_buffer("gamma", torch.tensor(1.0))
        self.register_buffer("readout", torch.zeros(offsets, RANDOM_FEATURES + self.size))
        self.register_buffer("bias", torch.zeros(offsets, 1))

    def state(self, excitation: torch.Tensor, joint_state: torch.Tensor) -> torch.Tensor:
        """(B, C, L) excitation, (B, 2, L) joint state -> (B, d, L - reach + 1) raw state at
        each step with ``reach`` steps of history."""
        steps = joint_state.shape[2] - self.reach + 1
        end = excitation.shape[2]
        parts = [joint_state[:, :, -steps:], nn.functional.conv1d(joint_state[:, 0:1],
                                                                   self.filters)]
        for lag in self.lags:
            parts.append(excitation[:, :, end - steps - lag:end - lag])
        return torch.cat(parts, dim=1)

    def features(self, state: torch.Tensor) -> torch.Tensor:
        """(B, d, L) raw state -> (B, D + d, L) kernel features."""
        # clamped: a channel near silent in the fitting data must not throw the linear part
        z = torch.clamp((state - self.mean) / self.spread, -self.limit, self.limit)
        scale = torch.sqrt(2.0 * self.gamma / self.size)
        waves = torch.matmul(scale * self.directions, z) + self.phases
        return torch.cat([self.wave_scale * torch.cos(waves), self.state_scale * z], dim=1)

    def forward(self, excitation: torch.Tensor, joint_state: torch.Tensor) -> torch.Tensor:
        """(B, C, L), (B, 2, L) -> correction (B, H + 1, L - reach + 1) rad."""
        return torch.matmul(self.readout, self.features(self.state(excitation, joint_state))
                            ) + self.bias

    @torch.no_grad()
    def fit(self, states: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor,
            gap: int) -> dict[str, float]:
        """Solve the readout by ridge regression and choose ``gamma`` and the ridge by
        ``FOLDS``-fold cross-validation over contiguous blocks of ``rows``.

        ``states`` (N, d) raw states, ``targets`` (N, H + 1) rad (the true angle at t + h less
        constant-velocity extrapolation), ``rows`` (N,) each sample's step in the concatenated
        sessions; samples within ``gap`` steps of a held-out block are left out of its fit.
        A fit that does not cross-validate better than no correction (constant velocity) leaves
        the readout at zero (``kernel`` False). Returns the choice and the cross-validated RMS
        errors at the last offset (rad) of the branch and of constant velocity."""
        x = states.double().numpy()
        y = targets.double().numpy()
        self.mean.copy_(torch.as_tensor(x.mean(axis=0)).reshape(-1, 1))
        spread = x.std(axis=0)
        # a state feature constant in the data (a silent channel) stays at its own scale
        self.spread.copy_(torch.as_tensor(np.where(spread > 1e-9, spread, 1.0)).reshape(-1, 1))
        blocks = _blocks(rows.numpy(), gap)
        best = (math.inf, GAMMAS[0], RIDGES[0], math.inf)
        for gamma in GAMMAS:
            self.gamma.fill_(gamma)
            phi = self._design(states)
            gram, rhs = phi.T @ phi, phi.T @ y
            errors = np.zeros((len(RIDGES), y.shape[1]))
            for held, kept in blocks:
                out = np.setdiff1d(np.arange(len(y)), kept)  # the block and its gaps
                solved = _ridge(gram - phi[out].T @ phi[out], rhs - phi[out].T @ y[out],
                                len(kept), RIDGES)
                for i, weights in enumerate(solved):
                    errors[i] += ((phi[held] @ weights - y[held]) ** 2).sum(axis=0)
            i = int(np.argmin(errors.mean(axis=1)))
            if errors[i].mean() < best[0]:
                best = (float(errors[i].mean()), gamma, RIDGES[i], float(errors[i, -1]))
        _, gamma, ridge, last = best
        self.gamma.fill_(gamma)
        phi = self._design(states)
        (weights,) = _ridge(phi.T @ phi, phi.T @ y, len(y), (ridge,))
        # no correction (constant velocity) where the kernel does not cross-validate better
        # at the horizon
        kernel = last < float((y[:, -1] ** 2).sum())
        self.readout.copy_(torch.as_tensor(weights[:-1].T) if kernel else 0.0)
        self.bias.copy_(torch.as_tensor(weights[-1]).reshape(-1, 1) if kernel else 0.0)
        still = float(np.sqrt(np.mean(y[:, -1] ** 2)))
        return {"kernel": kernel, "gamma": gamma, "ridge": ridge,
                "cv_rmse_rad": math.sqrt(last / len(y)) if kernel else still,
                "cv_constant_velocity_rmse_rad": still}

    def _design(self, states: torch.Tensor) -> np.ndarray:
        """(N, D + d + 1) float64 features of raw states, a constant column last."""
        phi = self.features(states.T.unsqueeze(0).float())[0].T.double().numpy()
        return np.hstack([phi, np.ones((len(phi), 1))])


def _ridge(gram: np.ndarray, rhs: np.ndarray, count: int, ridges: Sequence[float]
           ) -> list[np.ndarray]:
    """Per ridge r, the weights w minimising |phi w - y|^2 + count·r·|w|^2 over ``count``
    samples, from gram = phi'phi and rhs = phi'y (the constant column, the last,
    unpenalised)."""
    diagonal = np.diag_indices_from(gram)
    solved = []
    for ridge in ridges:
        penalty = np.full(len(gram), count * ridge)
        penalty[-1] = 0.0
        system = gram.copy()
        system[diagonal] += penalty
        solved.append(scipy.linalg.cho_solve(scipy.linalg.cho_factor(system), rhs))
    return solved


def _blocks(rows: np.ndarray, gap: int) -> Sequence[tuple[np.ndarray, np.ndarray]]:
    """(held-out, kept) sample indices per fold: contiguous blocks by step, each kept sample
    more than ``gap`` steps from its held-out block."""
    order = np.argsort(rows, kind="stable")
    folds = []
    for held in np.array_split(order, FOLDS):
        first, last = rows[held].min(), rows[held].max()
        kept = np.flatnonzero((rows < first - gap) | (rows > last + gap))
        folds.append((held, kept))
    return folds
