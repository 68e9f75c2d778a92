"""Accuracy and physical consistency of estimated trajectories against a session's truth.

Used alike for the PI-CNN, the data-only CNN and the EMG-driven physics baseline: every method
hands in predictions on the trial's time base (``index`` into the trial's samples, ``angle`` rad,
``force`` N (n, M), ``net_moment`` N·m), and gets the same numbers back.

- RMSE, NRMSE = RMSE / (max - min of the truth), R² = 1 - SS_res / SS_tot, Pearson r;
  angle RMSE and the truth's range (max - min) also in degrees.
- Physics residual: RMS (N·m) of I θ'' + B θ' + K(θ - θ0) + m g l_c sin(θ - θ_hang) - Σ r_i F_i
  on the predicted trajectory, with θ', θ'' by central differences over consecutive estimates
  (:func:`emg_msk_ros.physics.inverse.derivatives`), over each contiguous run of estimates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from emg_msk_ros.learning.dataset import Trial
from emg_msk_ros.physics.inverse import derivatives
from emg_msk_ros.physics.preset import Preset


def regression(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """RMSE, NRMSE (by the truth's range), R² and Pearson r of 1-D arrays."""
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    error = pred - truth
    rmse = float(np.sqrt(np.mean(error**2)))
    spread = float(np.ptp(truth))
    ss_tot = float(np.sum((truth - truth.mean()) ** 2))
    if np.std(pred) > 0 and np.std(truth) > 0:
        r = float(np.corrcoef(pred, truth)[0, 1])
    else:
        r = math.nan
    return {
        "rmse": rmse,
        "nrmse": rmse / spread if spread > 0 else math.nan,
        "r2": 1.0 - float(np.sum(error**2)) / ss_tot if ss_tot > 0 else math.nan,
        "r": r,
    }


def _runs(index: np.ndarray) -> list[slice]:
    """Slices of ``index`` over which it increases by exactly 1 (contiguous estimates)."""
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    edges = [0, *breaks.tolist(), len(index)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:]) if b - a >= 4]


def physics_residual(preset: Preset, angle: np.ndarray, force: np.ndarray, dt: float,
                     index: np.ndarray | None = None) -> np.ndarray:
    """Equation-of-motion residual (N·m) of a trajectory (n,) with forces (n, M) every dt s.

    With ``index``, differences are taken only within contiguous runs; samples of runs shorter
    than 4 are dropped.
    """
    index = np.arange(len(angle)) if index is None else np.asarray(index)
    parts = []
    for run in _runs(index):
        velocity, acceleration = derivatives(angle[run], dt)
        parts.append(preset.eom_residual(angle[run], velocity, acceleration, force[run]))
    return np.concatenate(parts) if parts else np.zeros(0)


def rms(x: np.ndarray) -> float:
    """Root mean square (nan for an empty array)."""
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else math.nan


def score(pairs: Sequence[tuple[dict[str, np.ndarray], Trial]], preset: Preset) -> dict:
    """All metrics (module docstring) of predictions against their trials' labels, pooled.

    ``pairs`` holds (predictions, trial) for one or more trials; ``predictions["index"]`` are
    sample indices into that trial (runs of consecutive indices are differentiated for the
    residual). Force and moment metrics appear when every trial has those labels.
    """
    pred: dict[str, list] = {"angle": [], "force": [], "net_moment": []}
    truth: dict[str, list] = {"angle": [], "force": [], "moment": []}
    residual, residual_truth = [], []
    for predictions, trial in pairs:
        index = np.asarray(predictions["index"])
        if trial.angle is None:
            raise ValueError(f"{trial.name}: the session has no joint angle to score against")
        for key in pred:
            pred[key].append(predictions[key])
        truth["angle"].append(trial.angle[index])
        if trial.force is not None:
            truth["force"].append(trial.force[index])
            residual_truth.append(physics_residual(preset, trial.angle[index],
                                                   trial.force[index], trial.dt, index))
        if trial.moment is not None:
            truth["moment"].append(trial.moment[index])
        residual.append(physics_residual(preset, predictions["angle"], predictions["force"],
                                         trial.dt, index))
    n = sum(len(a) for a in pred["angle"])
    if n < 4:
        raise ValueError(f"{n} estimates are too few to score")
    true_angle = np.concatenate(truth["angle"])
    angle = regression(np.concatenate(pred["angle"]), true_angle)
    angle["rmse_deg"] = math.degrees(angle["rmse"])
    angle["range_deg"] = math.degrees(float(np.ptp(true_angle)))  # what the RMSE compares to
    result: dict = {"samples": int(n), "angle": angle}
    if len(truth["force"]) == len(pairs):
        force_pred, force_true = np.concatenate(pred["force"]), np.concatenate(truth["force"])
        per_muscle = {name: regression(force_pred[:, i], force_true[:, i])
                      for i, name in enumerate(preset.muscle_names)}
        result["force"] = per_muscle
        result["force_nrmse_mean"] = float(np.mean([m["nrmse"] for m in per_muscle.values()]))
        result["physics_residual_rms_truth"] = rms(np.concatenate(residual_truth))
    if len(truth["moment"]) == len(pairs):
        result["moment"] = regression(np.concatenate(pred["net_moment"]),
                                      np.concatenate(truth["moment"]))
    result["physics_residual_rms"] = rms(np.concatenate(residual))
    return result


def score_ahead(pairs: Sequence[tuple[dict[str, np.ndarray], Trial]], preset: Preset,
                ahead: int) -> dict:
    """:func:`score` of a state-aided model's estimates now, plus ``angle_ahead``: its angle
    ``ahead`` steps later against the truth there, beside constant-velocity extrapolation from
    the last measured state (theta_m + omega_m·H·dt, the same samples), in rad and degrees.
    Estimates whose horizon falls past the trial's end are not scored ahead."""
    result = score(pairs, preset)
    predicted, extrapolated, truth = [], [], []
    for predictions, trial in pairs:
        if trial.joint_state is None:
            raise ValueError(f"{trial.name}: the trial has no measured joint state")
        index = np.asarray(predictions["index"])
        inside = index + ahead < len(trial)
        index = index[inside]
        predicted.append(np.asarray(predictions["angle_ahead"])[inside])
        state = trial.joint_state[index]
        extrapolated.append(state[:, 0] + state[:, 1] * ahead * trial.dt)
        truth.append(trial.angle[index + ahead])
    truth_all = np.concatenate(truth)
    if len(truth_all) < 4:
        raise ValueError(f"{len(truth_all)} estimates are too few to score ahead")
    ahead_metrics = regression(np.concatenate(predicted), truth_all)
    constant = regression(np.concatenate(extrapolated), truth_all)
    ahead_metrics.update(
        horizon_ms=1000.0 * ahead * pairs[0][1].dt, samples=int(len(truth_all)),
        rmse_deg=math.degrees(ahead_metrics["rmse"]),
        constant_velocity_rmse_deg=math.degrees(constant["rmse"]),
        constant_velocity_r2=constant["r2"],
        ratio_to_constant_velocity=(ahead_metrics["rmse"] / constant["rmse"]
                                    if constant["rmse"] > 0 else math.nan))
    result["angle_ahead"] = ahead_metrics
    return result
