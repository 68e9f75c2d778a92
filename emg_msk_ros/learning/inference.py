"""Running a trained model: one estimate per window (live) or for a whole envelope (offline).

``load_model(dir)`` validates the model folder (:mod:`.export`) and returns an
:class:`Estimator`. Offline runs use its TorchScript module (frozen), in batches; the live
:meth:`Estimator.predict` runs the same weights through :class:`NewestSteps` (numpy, only the
outputs one estimate needs: about 4× less time per call than TorchScript at this size). Both
finish the network's output with the same code (:meth:`Estimator.finish`), so the live graph
and an offline run give the same numbers (to float32 rounding).

Inputs are the conditioner's excitations; the estimator removes the session's resting level
(:attr:`Estimator.baseline`, see :mod:`.dataset`) before the network. For the window's newest
step the estimate holds:

- ``angle`` (rad): the network's angle output;
- ``velocity`` (rad/s): second-order backward difference of the newest three predicted angles,
  (3 theta_k - 4 theta_k-1 + theta_k-2) / (2 dt), dt = 1 / model rate;
- ``force`` (N) per muscle: the network's force output;
- ``moment`` (N·m) per muscle r_i(theta)·F_i, with the preset's moment arms, and their sum
  ``net_moment`` (theta limited to the joint's range for the muscle geometry);
- ``activation`` per muscle: derived, not predicted: the preset's Hill model inverted at the
  estimated angle and velocity, a = (F - F(a=0)) / (F(a=1) - F(a=0)), clipped to [0, 1]
  (with the learned strength and length factors when the model has them); 0 where the muscle
  cannot produce active force.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emg_msk_ros.learning.dataset import model_input
from emg_msk_ros.learning.export import ModelDir, ModelError, read_model_dir, torchscript
from emg_msk_ros.learning.metadata import KIND_EMG, KIND_STATE_AIDED
from emg_msk_ros.physics import muscle as hill
from emg_msk_ros.physics.curves import CurveParams
from emg_msk_ros.physics.muscle import MuscleSet
from emg_msk_ros.physics.preset import Preset
from emg_msk_ros.signal.calibration import Calibration
from emg_msk_ros.signal.config import ConditioningSettings

__all__ = ["Estimate", "Estimator", "ModelError", "estimate_offline", "load_model"]

# Windows per forward call in estimate_offline.
_OFFLINE_BATCH = 2048
# Newest network outputs one live estimate needs (velocity: a three-point difference).
_LIVE_STEPS = 3
# Hill inversion: activations 0 and 1 (broadcast over samples and muscles), and the smallest
# active force (N) per unit activation that is inverted (below it the activation is 0).
_ZERO_ONE = np.array([0.0, 1.0])[:, None, None]
_MIN_GAIN = 1e-9


@dataclass(frozen=True)
class Estimate:
    """The estimate for the newest step of a window (SI units; arrays per muscle, (M,))."""

    angle: float  # rad
    velocity: float  # rad/s
    activation: np.ndarray  # 0..1, derived from force (see module docstring)
    force: np.ndarray  # N
    moment: np.ndarray  # N·m, r_i(theta)·F_i
    net_moment: float  # N·m


def learned_muscles(preset: Preset, learned: dict[str, list[float]]) -> MuscleSet:
    """The preset's muscles scaled by learned factors (strength, fiber_length, tendon_slack)."""
    ones = np.ones(preset.muscles.count)
    return preset.muscles.scaled(np.asarray(learned.get("strength", ones)),
                                 np.asarray(learned.get("fiber_length", ones)),
                                 np.asarray(learned.get("tendon_slack", ones)))


def hill_activation(muscles: MuscleSet, params: CurveParams, force, lengths, arms, omega):
    """Activation (..., M) with which rigid-tendon Hill units give ``force`` (N, (..., M)) at
    muscle-tendon lengths and moment arms (m, (..., M)) and joint velocity ``omega`` (rad/s,
    (...)), clipped to [0, 1]. The force is linear in activation, so two evaluations of the
    preset's own force law (a = 0 and a = 1) give it exactly."""
    passive, full = hill.rigid_force(muscles, params, _ZERO_ONE, lengths, arms, omega)
    gain = full - passive
    safe = np.where(gain > _MIN_GAIN, gain, np.inf)
    return np.clip((force - passive) / safe, 0.0, 1.0)


def finish_outputs(output: np.ndarray, preset: Preset, muscles: MuscleSet, dt: float
                   ) -> dict[str, np.ndarray]:
    """Estimates for the newest step of each window from raw network outputs (N, 1 + M, K)
    (see the module docstring); ``dt`` is the model's sample interval (s)."""
    output = output.astype(np.float64)
    angle = output[:, 0, -1]
    velocity = (3.0 * angle - 4.0 * output[:, 0, -2] + output[:, 0, -3]) / (2.0 * dt)
    force = output[:, 1:, -1]
    # muscle geometry is only defined (fitted) over the joint's range
    lengths, arms = hill.geometry(muscles, preset.clip_angle(angle))
    moment = arms * force
    activation = hill_activation(muscles, preset.curves, force, lengths, arms, velocity)
    return {"angle": angle, "velocity": velocity, "activation": activation,
            "force": force, "moment": moment, "net_moment": moment.sum(axis=1)}


class NewestSteps:
    """The network's forward pass in numpy for one window, computing only its newest outputs.

    The live estimate needs the last ``steps`` output steps of one window; the valid dilated
    convolutions then need only the last :attr:`inputs` samples of it, and numpy's few calls per
    layer cost less than TorchScript's per-operator overhead at this size. Same weights and
    arithmetic as :class:`~emg_msk_ros.learning.model.PICNN` (float32); a test keeps the two
    equal.
    """

    def __init__(self, state: dict[str, torch.Tensor], steps: int) -> None:
        def array(name: str) -> np.ndarray:
            return state[name].detach().numpy().astype(np.float32)

        convs = sorted({key.rsplit(".", 1)[0] for key in state if key.startswith("body.")},
                       key=lambda name: int(name.split(".")[1]))
        self.layers = []  # (weights (out, kernel·in), bias (out, 1), dilation, kernel)
        self.inputs = steps
        for level, name in enumerate(convs):
            weight = array(f"{name}.weight")  # (out, in, kernel)
            out, width, kernel = weight.shape
            dilation = 2**level  # PICNN's dilations 1, 2, 4, ...
            self.layers.append((np.ascontiguousarray(
                weight.transpose(0, 2, 1).reshape(out, kernel * width)),
                array(f"{name}.bias")[:, None], dilation, kernel))
            self.inputs += (kernel - 1) * dilation
        self.head = array("head.weight")[:, :, 0], array("head.bias")[:, None]
        self.angle_mean, self.angle_scale = float(state["angle_mean"]), float(state["angle_scale"])
        self.force_scale = array("force_scale")  # (M, 1)
        known = {f"{name}.{part}" for name in [*convs, "head"] for part in ("weight", "bias")}
        unknown = sorted(set(state) - known - {"angle_mean", "angle_scale", "force_scale"})
        if unknown:  # a tensor this pass would ignore, e.g. a development version's input gain
            raise ModelError(f"the weights hold {', '.join(unknown)}, which this version's "
                             "network does not have; retrain the model with this version")

    def __call__(self, window: np.ndarray) -> np.ndarray:
        """Raw output (1, 1 + M, steps) for one window (C, >= inputs) of network input."""
        h = window[:, -self.inputs:]
        for weight, bias, dilation, kernel in self.layers:
            n = h.shape[1] - (kernel - 1) * dilation
            taps = np.concatenate([h[:, j * dilation:j * dilation + n] for j in range(kernel)])
            h = weight @ taps
            h += bias
            np.maximum(h, 0.0, out=h)
        z = self.head[0] @ h + self.head[1]
        angle = self.angle_mean + self.angle_scale * z[:1]
        force = self.force_scale * np.logaddexp(0.0, z[1:])  # softplus
        return np.concatenate([angle, force])[None]


class Estimator:
    """A loaded model: metadata, the conditioner settings it expects, and the frozen network."""

    # True for a model that also reads the exoskeleton's joint state (.state_inference)
    needs_joint_state = False

    def __init__(self, model: ModelDir) -> None:
        meta = model.meta
        self.meta: dict[str, Any] = meta
        self.path: Path = model.path
        self.channel_names: list[str] = list(meta["channel_names"])
        self.sample_rate: float = float(meta["sample_rate"])
        self.model_rate: float = float(meta["model_rate"])
        self.window: int = int(meta["window"])
        self.horizon: int = int(meta["horizon"])
        self.muscle_names: list[str] = list(meta["muscles"])
        self.joint_name: str = meta["joint"]
        self.preset: Preset = model.preset
        self.conditioner_settings: ConditioningSettings = model.conditioning
        self.calibration: Calibration = model.calibration
        self.muscles = learned_muscles(model.preset, meta["physics"]["learned"])
        self._window_shape = (self.window, len(self.channel_names))
        self.baseline = meta["normalisation"]["excitation_baseline"]
        self.dt = 1.0 / self.model_rate
        self.module = model.module  # scripted, not frozen: differentiable and comparable
        with torch.no_grad(), torchscript():
            self._frozen = torch.jit.freeze(model.module)
        if not self.needs_joint_state:
            self._live = NewestSteps(model.module.state_dict(), _LIVE_STEPS)

    @property
    def baseline(self) -> np.ndarray:
        """Resting excitation (C,) removed from every input (:func:`.dataset.model_input`).

        Loaded from model.yaml (the first training session's); set it to the live session's
        own (:func:`.dataset.session_baseline` of its excitation) when that is known.
        """
        return self._baseline

    @baseline.setter
    def baseline(self, values) -> None:
        values = np.asarray(values, dtype=np.float32).reshape(-1)
        if values.shape != (len(self.channel_names),) or not np.all(np.isfinite(values)):
            raise ValueError(f"baseline must hold {len(self.channel_names)} finite values "
                             f"(one per channel), got {values}")
        self._baseline = values

    def check_channels(self, names) -> None:
        """Raise :class:`ModelError` unless ``names`` are exactly the model's channels, in order."""
        if list(names) != self.channel_names:
            raise ModelError(
                f"model {self.path} expects EMG channels {self.channel_names} (in this order), "
                f"got {list(names)}")

    def run(self, windows: np.ndarray) -> np.ndarray:
        """Raw network output (N, 1 + M, K) for windows (N, C, W) of network input."""
        with torch.inference_mode():
            return self._frozen(torch.as_tensor(windows, dtype=torch.float32)).numpy()

    def finish(self, output: np.ndarray) -> dict[str, np.ndarray]:
        """Estimates for the newest step of each window from raw outputs (N, 1 + M, K)."""
        return finish_outputs(output, self.preset, self.muscles, self.dt)

    def predict(self, window: np.ndarray) -> Estimate:
        """The estimate for the newest step of ``window`` (W, C): excitation, oldest first
        (the conditioner's output; :attr:`baseline` is removed here)."""
        if window.shape != self._window_shape:
            raise ValueError(f"window must have shape {self._window_shape}, got {window.shape}")
        x = model_input(np.asarray(window, dtype=np.float32), self._baseline)
        est = self.finish(self._live(x.T))
        return Estimate(angle=float(est["angle"][0]), velocity=float(est["velocity"][0]),
                        activation=est["activation"][0], force=est["force"][0],
                        moment=est["moment"][0], net_moment=float(est["net_moment"][0]))


def load_model(model_dir: str | Path) -> Estimator:
    """Load a model folder written by ``emg-msk train``; :class:`ModelError` if unusable.
    A state-aided model (model.yaml ``kind``) comes back as its
    :class:`~.state_inference.StateAidedEstimator`."""
    return estimator_for(read_model_dir(model_dir))


def estimator_for(model: ModelDir) -> Estimator:
    """The estimator class of the model's kind around a loaded model folder."""
    if model.meta.get("kind", KIND_EMG) == KIND_STATE_AIDED:
        from emg_msk_ros.learning.state_inference import StateAidedEstimator

        return StateAidedEstimator(model)
    return Estimator(model)


def refuse_without_joint_state(estimator: Estimator, where: str) -> None:
    """ModelError when a model that needs the joint states is used where there are none."""
    if estimator.needs_joint_state:
        raise ModelError(f"model {estimator.path} is state-aided: it needs the exoskeleton's "
                         f"joint states (angle, velocity) beside the EMG, and {where} has none")


def estimate_offline(estimator: Estimator, envelope: np.ndarray,
                     baseline: np.ndarray | None = None,
                     joint_state: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Estimates for every step of an excitation array (n, C) at the model rate.

    ``baseline`` (C,) is the resting excitation removed from the input (default: the
    estimator's :attr:`~Estimator.baseline`, as :meth:`Estimator.predict` uses).

    Estimate j uses ``envelope[j : j + W]`` and belongs to envelope sample ``j + W - 1``: the
    first estimate is for sample index W - 1 (the first full window); ``index`` holds these
    sample indices. Fewer than W samples give empty arrays. Keys: ``index``, ``angle`` (rad),
    ``velocity`` (rad/s), ``activation``, ``force`` (N, (N, M)), ``moment`` (N·m, (N, M)),
    ``net_moment`` (N·m). A state-aided model needs ``joint_state`` (n, 2) (angle rad, velocity
    rad/s held at each step, :mod:`.joint_input`) and adds its predictions ahead
    (:meth:`.state_inference.StateAidedEstimator.offline`).
    """
    if estimator.needs_joint_state:
        if joint_state is None:
            refuse_without_joint_state(estimator, "this offline run")
        return estimator.offline(envelope, baseline, joint_state)
    envelope = np.asarray(envelope, dtype=np.float32)
    if envelope.ndim != 2 or envelope.shape[1] != len(estimator.channel_names):
        raise ValueError(f"envelope must be (n, {len(estimator.channel_names)}), got "
                         f"{envelope.shape}")
    base = estimator.baseline if baseline is None else np.asarray(baseline, dtype=np.float32)
    envelope = model_input(envelope, base)
    w = estimator.window
    n_out = max(0, envelope.shape[0] - w + 1)
    if n_out == 0:
        empty = estimator.finish(np.zeros((0, 1 + len(estimator.muscle_names), estimator.horizon)))
        return {"index": np.zeros(0, dtype=np.int64), **empty}
    windows = np.lib.stride_tricks.sliding_window_view(envelope, w, axis=0)  # (N, C, W)
    outputs = np.concatenate([estimator.run(np.ascontiguousarray(windows[i:i + _OFFLINE_BATCH]))
                              for i in range(0, n_out, _OFFLINE_BATCH)])
    return {"index": np.arange(w - 1, envelope.shape[0]), **estimator.finish(outputs)}
