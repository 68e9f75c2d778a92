"""Running a state-aided model (:mod:`.state_model`): one forward pass per estimate, live or
offline, in ONNX Runtime (:mod:`.runtime`; no torch), as the EMG-only model runs.

The graph takes the named inputs ``excitation`` (C, W) and ``joint_state`` (2, W) and gives the
named outputs ``angle`` (H + 1, K) and ``force`` (M, H + 1, K) (:meth:`StateAidedEstimator.
graph_io`); only each window's newest step k = K - 1 is used. Both the live
:meth:`StateAidedEstimator.predict` and :meth:`StateAidedEstimator.offline` run it through
:meth:`.inference.Estimator.run` and finish with the same :meth:`StateAidedEstimator.finish`, so
live and offline estimates agree.

For the window's newest step t the estimate holds the EMG-only estimate's fields (now) and the
prediction ``ahead`` steps later (t + H·dt):

- ``angle`` (rad): the network's angle at t (the measured angle, corrected);
  ``velocity`` (rad/s): the measured velocity at t;
- ``force``, ``moment``, ``net_moment``, ``activation``: at t, as for the EMG-only model
  (:func:`.inference.finish_outputs`'s rules: geometry at the angle clipped to the range,
  activation from the Hill model inverted);
- ``angle_ahead`` (rad) at t + H·dt; ``velocity_ahead`` (rad/s) at t + H·dt: backward
  difference of the predicted trajectory (second order for H >= 2, first order for H = 1; the
  measured velocity for H = 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from emg_msk_ros.learning.inference import (
    Estimate,
    Estimator,
    ModelError,
    model_input,
    run_windows,
    with_activation,
)
from emg_msk_ros.learning.metadata import STATE_CHANNELS, ModelMeta
from emg_msk_ros.learning.runtime import OnnxModel, TensorSpec
from emg_msk_ros.physics import muscle as hill


@dataclass(frozen=True)
class AheadEstimate(Estimate):
    """:class:`~.inference.Estimate` now, plus the joint ``horizon_s`` later."""

    angle_ahead: float  # rad
    velocity_ahead: float  # rad/s
    horizon_s: float  # s


class StateAidedEstimator(Estimator):
    """A loaded state-aided model; see the module docstring."""

    needs_joint_state = True

    def __init__(self, model: ModelMeta, network: OnnxModel) -> None:
        self.ahead: int = int(model.meta["ahead"]["steps"])
        super().__init__(model, network)
        self.horizon_s: float = self.ahead * self.dt
        self._state_shape = (self.window, STATE_CHANNELS)

    def graph_io(self) -> dict[str, tuple[TensorSpec, ...]]:
        """``excitation`` (C, W) and ``joint_state`` (2, W) in, ``angle`` (H + 1, K) and
        ``force`` (M, H + 1, K) out."""
        offsets, steps = self.ahead + 1, self.horizon
        return {"inputs": (TensorSpec("excitation", (len(self.channel_names), self.window)),
                           TensorSpec("joint_state", (STATE_CHANNELS, self.window))),
                "outputs": (TensorSpec("angle", (offsets, steps)),
                            TensorSpec("force", (len(self.muscle_names), offsets, steps)))}

    def finish(self, outputs: Mapping[str, np.ndarray], velocity: np.ndarray, *,
               activation: bool = True) -> dict[str, np.ndarray]:
        """Estimates from the network's named outputs (N windows) at their newest step and the
        measured velocity at t (N,) rad/s (without ``activation``: what it needs instead, see
        :func:`~.inference.with_activation`)."""
        angles = np.asarray(outputs["angle"][..., -1], dtype=np.float64)  # (N, H + 1)
        force = np.asarray(outputs["force"][..., 0, -1], dtype=np.float64)  # (N, M), h = 0
        angle = angles[:, 0]
        velocity = np.asarray(velocity, dtype=np.float64)
        lengths, arms = hill.geometry(self.muscles, self.preset.clip_angle(angle))
        moment = arms * force
        h = self.ahead
        if h >= 2:
            ahead_velocity = (3 * angles[:, h] - 4 * angles[:, h - 1] + angles[:, h - 2]) / (
                2 * self.dt)
        elif h == 1:
            ahead_velocity = (angles[:, 1] - angles[:, 0]) / self.dt
        else:
            ahead_velocity = velocity
        out = {"angle": angle, "velocity": velocity, "force": force, "moment": moment,
               "net_moment": moment.sum(axis=1), "angle_ahead": angles[:, h],
               "velocity_ahead": ahead_velocity}
        return with_activation(out, self.muscles, self.preset.curves, lengths, arms, activation)

    def predict(self, window: np.ndarray, joint_state: np.ndarray | None = None
                ) -> AheadEstimate:
        """The estimate for the newest step of ``window`` (W, C) excitation and
        ``joint_state`` (W, 2) (angle rad, velocity rad/s), both oldest first."""
        if joint_state is None:
            raise ModelError(f"model {self.path} is state-aided: predict() needs the joint "
                             "states (W, 2) beside the excitation window")
        if window.shape != self._window_shape or joint_state.shape != self._state_shape:
            raise ValueError(f"windows must have shapes {self._window_shape} and "
                             f"{self._state_shape}, got {window.shape} and {joint_state.shape}")
        x = model_input(np.asarray(window, dtype=np.float32), self.baseline)
        state = np.asarray(joint_state, dtype=np.float32)
        outputs = self.run({"excitation": np.ascontiguousarray(x.T[None]),
                            "joint_state": np.ascontiguousarray(state.T[None])})
        est = self.finish(outputs, state[-1:, 1], activation=False)
        return AheadEstimate(
            angle=float(est["angle"][0]), velocity=float(est["velocity"][0]),
            force=est["force"][0], moment=est["moment"][0],
            net_moment=float(est["net_moment"][0]), activation_of=self.activation_of(est),
            angle_ahead=float(est["angle_ahead"][0]),
            velocity_ahead=float(est["velocity_ahead"][0]), horizon_s=self.horizon_s)

    def offline(self, envelope: np.ndarray, baseline: np.ndarray | None,
                joint_state: np.ndarray) -> dict[str, np.ndarray]:
        """:func:`.inference.estimate_offline` for this model: estimates for every full window
        of ``envelope`` (n, C) with ``joint_state`` (n, 2), plus ``angle_ahead`` and
        ``velocity_ahead`` (for sample ``index`` + H)."""
        envelope = np.asarray(envelope, dtype=np.float32)
        state = np.asarray(joint_state, dtype=np.float32)
        if envelope.ndim != 2 or envelope.shape[1] != len(self.channel_names):
            raise ValueError(f"envelope must be (n, {len(self.channel_names)}), got "
                             f"{envelope.shape}")
        if state.shape != (len(envelope), STATE_CHANNELS) or not np.isfinite(state).all():
            raise ValueError(f"joint_state must be ({len(envelope)}, {STATE_CHANNELS}) finite "
                             f"values, got shape {state.shape}")
        base = self.baseline if baseline is None else np.asarray(baseline, dtype=np.float32)
        outputs = run_windows(self, {"excitation": model_input(envelope, base),
                                     "joint_state": state})
        index = np.arange(self.window - 1, len(envelope), dtype=np.int64)
        return {"index": index, **self.finish(outputs, state[index, 1])}
