"""Running a trained model: one estimate per window (live) or for a whole envelope (offline).

``load_model(dir)`` validates the model folder's model.yaml (:mod:`.metadata`) and its
``model.onnx`` (:mod:`.runtime`) and returns an :class:`Estimator`. The network runs once per
estimate, in ONNX Runtime, on the whole window, live (:meth:`Estimator.predict`) and offline
(:func:`estimate_offline`, in batches of windows); both finish the network's outputs with the
same code (:meth:`Estimator.finish`), so the live graph and an offline run give the same numbers
(to float32 rounding). Nothing here imports torch. A state-aided model (model.yaml ``kind``,
:mod:`.state_inference`) comes back as a :class:`~.state_inference.StateAidedEstimator`, which
also feeds the measured joint state and reads the joint ahead, through the same session.

Inputs are the conditioner's excitations; the estimator removes the session's resting level
(:attr:`Estimator.baseline`, see :mod:`.dataset`) before the network (:func:`model_input`).
For the window's newest step the estimate holds:

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

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from emg_msk_ros.learning.metadata import (
    KIND_EMG,
    KIND_STATE_AIDED,
    META_FILE,
    Fields,
    ModelError,
    ModelMeta,
    read_model_meta,
)
from emg_msk_ros.learning.runtime import SECTION, OnnxModel, TensorSpec, load_onnx
from emg_msk_ros.physics import muscle as hill
from emg_msk_ros.physics.curves import CurveParams
from emg_msk_ros.physics.muscle import MuscleSet
from emg_msk_ros.physics.preset import Preset
from emg_msk_ros.signal.calibration import Calibration
from emg_msk_ros.signal.config import ConditioningSettings

__all__ = ["Estimate", "Estimator", "ModelError", "estimate_offline", "load_model"]

# Windows per forward call in estimate_offline.
_OFFLINE_BATCH = 2048
# Hill inversion: activations 0 and 1 (broadcast over samples and muscles), and the smallest
# active force (N) per unit activation that is inverted (below it the activation is 0).
_ZERO_ONE = np.array([0.0, 1.0])[:, None, None]
_MIN_GAIN = 1e-9


@dataclass(frozen=True)
class Estimate:
    """The estimate for the newest step of a window (SI units; arrays per muscle, (M,)).

    ``activation`` is worked out when first read (``activation_of``): the Hill inversion takes
    longer than the rest of the estimate, and the live estimator publishes the joint first.
    """

    angle: float  # rad
    velocity: float  # rad/s
    force: np.ndarray  # N
    moment: np.ndarray  # N·m, r_i(theta)·F_i
    net_moment: float  # N·m
    activation_of: Callable[[], np.ndarray] = field(repr=False, compare=False)

    @cached_property
    def activation(self) -> np.ndarray:
        """0..1 per muscle, derived from force (see module docstring)."""
        return self.activation_of()


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


def model_input(excitation: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Excitation (..., C) with the baseline (C,) removed, clipped to [0, 1]."""
    excitation = np.asarray(excitation)
    return np.clip(excitation - np.asarray(baseline, dtype=excitation.dtype), 0.0, 1.0)


def finish_outputs(outputs: dict[str, np.ndarray], preset: Preset, muscles: MuscleSet,
                   dt: float, *, activation: bool = True) -> dict[str, np.ndarray]:
    """Estimates for the newest step of each window from the network's outputs ``angle``
    (N, 1, K) and ``force`` (N, M, K) (see the module docstring); ``dt`` is the model's sample
    interval (s). Without ``activation``, what it needs instead (see :func:`with_activation`)."""
    angles = outputs["angle"][:, 0, -3:].astype(np.float64)  # the newest three steps
    angle = angles[:, -1]
    velocity = (3.0 * angle - 4.0 * angles[:, -2] + angles[:, -3]) / (2.0 * dt)
    force = outputs["force"][:, :, -1].astype(np.float64)
    # muscle geometry is only defined (fitted) over the joint's range
    lengths, arms = hill.geometry(muscles, preset.clip_angle(angle))
    moment = arms * force
    out = {"angle": angle, "velocity": velocity, "force": force, "moment": moment,
           "net_moment": moment.sum(axis=1)}
    return with_activation(out, muscles, preset.curves, lengths, arms, activation)


def with_activation(out: dict[str, np.ndarray], muscles: MuscleSet, curves: CurveParams,
                    lengths: np.ndarray, arms: np.ndarray, now: bool) -> dict[str, np.ndarray]:
    """``out`` (with ``force`` (N, M) N and ``velocity`` (N,) rad/s) plus its ``activation``
    (N, M), or, unless ``now``, the muscle ``geometry`` (lengths, arms, m) that
    :meth:`Estimator.activation_of` works it out from later."""
    if now:
        out["activation"] = hill_activation(muscles, curves, out["force"], lengths, arms,
                                            out["velocity"])
    else:
        out["geometry"] = (lengths, arms)
    return out


class Estimator:
    """A loaded model: metadata, the conditioner settings it expects, and the network
    (:class:`.runtime.OnnxModel`, checked to take this model's window and give its outputs)."""

    # True for a model that also reads the exoskeleton's joint state (.state_inference)
    needs_joint_state = False

    def __init__(self, model: ModelMeta, network: OnnxModel) -> None:
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
        self._check_network(network)
        self.network = network

    def graph_io(self) -> dict[str, tuple[TensorSpec, ...]]:
        """The graph's ``inputs`` and ``outputs`` this model needs: ``excitation`` (C, W) in,
        ``angle`` (1, K) and ``force`` (M, K) out."""
        return {"inputs": (TensorSpec("excitation", (len(self.channel_names), self.window)),),
                "outputs": (TensorSpec("angle", (1, self.horizon)),
                            TensorSpec("force", (len(self.muscle_names), self.horizon)))}

    def _check_network(self, network: OnnxModel) -> None:
        """Refuse a graph that does not take this model's inputs or give its outputs."""
        check = Fields(f"{self.path / META_FILE}")
        for field, specs in self.graph_io().items():
            if getattr(network, field) != specs:
                check.fail(f"{SECTION}.{field}", f"{network.where} has "
                           f"{[s.to_mapping() for s in getattr(network, field)]}, this model's "
                           f"kind, channels, muscles, window and horizon need "
                           f"{[s.to_mapping() for s in specs]}")

    @property
    def baseline(self) -> np.ndarray:
        """Resting excitation (C,) removed from every input (:func:`model_input`).

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

    def run(self, windows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The network's outputs by name (:meth:`graph_io`; EMG-only: ``angle`` (N, 1, K) rad,
        ``force`` (N, M, K) N) for windows of network input by name (float32; EMG-only:
        ``excitation`` (N, C, W))."""
        return self.network.run(windows)

    def finish(self, outputs: dict[str, np.ndarray], *, activation: bool = True
               ) -> dict[str, np.ndarray]:
        """Estimates for the newest step of each window from the network's outputs (without
        ``activation``: none, see :meth:`activation_of`)."""
        return finish_outputs(outputs, self.preset, self.muscles, self.dt, activation=activation)

    def activation_of(self, est: dict[str, np.ndarray]) -> Callable[[], np.ndarray]:
        """The activation (M,) of the first estimate in ``est`` (from :meth:`finish` without
        activation), worked out when called."""
        force, velocity = est["force"][:1], est["velocity"][:1]
        lengths, arms = (part[:1] for part in est["geometry"])
        return lambda: hill_activation(self.muscles, self.preset.curves, force, lengths, arms,
                                       velocity)[0]

    def predict(self, window: np.ndarray) -> Estimate:
        """The estimate for the newest step of ``window`` (W, C): excitation, oldest first
        (the conditioner's output; :attr:`baseline` is removed here)."""
        if window.shape != self._window_shape:
            raise ValueError(f"window must have shape {self._window_shape}, got {window.shape}")
        x = model_input(np.asarray(window, dtype=np.float32), self._baseline)
        est = self.finish(self.run({"excitation": np.ascontiguousarray(x.T[None])}),
                          activation=False)
        return Estimate(angle=float(est["angle"][0]), velocity=float(est["velocity"][0]),
                        force=est["force"][0], moment=est["moment"][0],
                        net_moment=float(est["net_moment"][0]),
                        activation_of=self.activation_of(est))


def load_model(model_dir: str | Path, threads: int = 1) -> Estimator:
    """Load a model folder written by ``emg-msk train``, its network in ONNX Runtime with
    ``threads`` CPU threads; :class:`ModelError` if unusable. A state-aided model (model.yaml
    ``kind``) comes back as its :class:`~.state_inference.StateAidedEstimator`."""
    found = read_model_meta(model_dir)
    return estimator_for(found, load_onnx(found.path, found.meta, threads))


def estimator_for(model: ModelMeta, network: OnnxModel) -> Estimator:
    """The estimator of the model's kind around its metadata and network."""
    if model.meta.get("kind", KIND_EMG) == KIND_STATE_AIDED:
        from emg_msk_ros.learning.state_inference import StateAidedEstimator

        return StateAidedEstimator(model, network)
    return Estimator(model, network)


def refuse_without_joint_state(estimator: Estimator, where: str) -> None:
    """ModelError when a model that needs the joint states is used where there are none."""
    if estimator.needs_joint_state:
        raise ModelError(f"model {estimator.path} is state-aided: it needs the exoskeleton's "
                         f"joint states (angle, velocity) beside the EMG, and {where} has none")


def run_windows(estimator: Estimator, series: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The network's outputs by name for every full window of each named input series
    (n, rows) (float32, one row per step, the same n for all), in batches; N = n - W + 1
    windows, none for n < W."""
    w = estimator.window
    n_out = len(next(iter(series.values()))) - w + 1
    if n_out <= 0:
        return {spec.name: np.zeros((0, *spec.shape), np.float32)
                for spec in estimator.network.outputs}
    windows = {name: np.lib.stride_tricks.sliding_window_view(values, w, axis=0)  # (N, rows, W)
               for name, values in series.items()}
    batches = [estimator.run({name: np.ascontiguousarray(v[i:i + _OFFLINE_BATCH])
                              for name, v in windows.items()})
               for i in range(0, n_out, _OFFLINE_BATCH)]
    return {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}


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
    outputs = run_windows(estimator, {"excitation": model_input(envelope, base)})
    index = np.arange(estimator.window - 1, len(envelope), dtype=np.int64)
    return {"index": index, **estimator.finish(outputs)}
