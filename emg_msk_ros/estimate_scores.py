"""Recorded estimates against a simulation's truth, matched by stamp (no ROS needed).

Every estimate carries the stamp of the newest EMG sample it derives from, so its time in the
simulation is ``(stamp − start_ns)`` s, ``start_ns`` being the stamp of EMG sample 0. The truth
is looked up there, never by arrival order:

- an estimate *now* (``msk/joint_states``, ``msk/muscle_states``): its angle (rad), muscle forces
  (N) and net muscle moment (N·m) against the truth at its time;
- a prediction ``horizon`` s ahead (``msk/joint_prediction``): its angle against the truth at its
  time + horizon, beside constant-velocity extrapolation of the exoskeleton's measured joint
  state over the same samples: the newest ``joint_states`` reading stamped at or before the
  estimate (as the estimator holds it, :func:`~emg_msk_ros.learning.joint_input.hold_at`),
  θ_m + ω_m · horizon.

Figures: angle RMSE in degrees; NRMSE (RMSE / range of the truth over the scored samples,
:func:`~emg_msk_ros.learning.metrics.regression`) of each muscle's force, their mean, and of
the net moment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emg_msk_ros.io.bag_replay import read_topics
from emg_msk_ros.learning.joint_input import hold_at


def _stamps(items) -> np.ndarray:
    return np.array([m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec
                     for _, m in items], dtype=np.int64)


def joint_series(items: Sequence[tuple[int, object]]) -> dict[str, np.ndarray]:
    """(log time ns, sensor_msgs/JointState) pairs of one joint as arrays: ``stamp_ns``,
    ``received_ns``, ``angle`` (rad), ``velocity`` (rad/s)."""
    return {"stamp_ns": _stamps(items),
            "received_ns": np.array([t for t, _ in items], dtype=np.int64),
            "angle": np.array([m.position[0] for _, m in items], dtype=np.float64),
            "velocity": np.array([m.velocity[0] for _, m in items], dtype=np.float64)}


def estimate_topics(namespace: str = "") -> tuple[str, str]:
    """The joint and muscle estimate topics of the estimator in ``namespace`` ('' : the root)."""
    prefix = f"/{namespace.strip('/')}" if namespace.strip("/") else ""
    return f"{prefix}/msk/joint_states", f"{prefix}/msk/muscle_states"


def estimates_from(joints: Sequence[tuple[int, object]], muscles: Sequence[tuple[int, object]],
                   where: str = "") -> dict[str, np.ndarray]:
    """One estimator's recorded output, as arrays in arrival order.

    Keys: ``stamp_ns`` (the estimate's stamp: acquisition time of its newest EMG sample),
    ``received_ns`` (log time: arrival at the recorder), ``angle`` (rad), ``velocity`` (rad/s),
    ``net_moment`` (N·m), and per muscle (n, M) ``activation``, ``force`` (N), ``moment`` (N·m).
    """
    if len(joints) != len(muscles):
        raise ValueError(f"{where}: {len(joints)} joint estimates but {len(muscles)} muscle "
                         "estimates recorded")
    out = joint_series(joints)
    if not np.array_equal(out["stamp_ns"], _stamps(muscles)):
        raise ValueError(f"{where}: joint and muscle estimates carry different stamps")
    count = len(muscles[0][1].names) if muscles else 0

    def rows(field):
        values = np.array([getattr(m, field) for _, m in muscles], dtype=np.float64)
        return values.reshape(-1, count)

    out["net_moment"] = np.array([m.effort[0] for _, m in joints], dtype=np.float64)
    out.update(activation=rows("activation"), force=rows("force"), moment=rows("moment"))
    return out


def recorded_estimates(path: str | Path, namespace: str = "") -> dict[str, np.ndarray]:
    """:func:`estimates_from` the estimator in ``namespace`` recorded in the bag ``path``."""
    joints, muscles = estimate_topics(namespace)
    topics = read_topics(path, [joints, muscles])
    return estimates_from(topics[joints], topics[muscles], str(path))


@dataclass(frozen=True)
class Truth:
    """What the simulated joint and muscles did: ``time`` (n,) s increasing, ``angle`` (n,)
    rad, ``force`` (n, M) N of ``muscle_names``, ``net_moment`` (n,) N·m."""

    time: np.ndarray
    angle: np.ndarray
    force: np.ndarray
    net_moment: np.ndarray
    muscle_names: tuple[str, ...]

    def at(self, times: np.ndarray) -> dict[str, np.ndarray]:
        """The truth linearly interpolated at ``times`` (s, within the simulated span)."""
        times = np.asarray(times, dtype=np.float64)
        if times.size and (times.min() < self.time[0] or times.max() > self.time[-1]):
            raise ValueError(f"times {times.min():.3f}..{times.max():.3f} s lie outside the "
                             f"simulated {self.time[0]:.3f}..{self.time[-1]:.3f} s")
        return {"angle": np.interp(times, self.time, self.angle),
                "force": np.stack([np.interp(times, self.time, f) for f in self.force.T],
                                  axis=1),
                "net_moment": np.interp(times, self.time, self.net_moment)}


def score_now(estimates: Mapping[str, np.ndarray], times: np.ndarray, truth: Truth,
              muscle_names: Sequence[str]) -> dict:
    """Estimates now (rows of ``estimates`` at ``times`` s) against the truth there: angle RMSE
    (deg) and R², force NRMSE per muscle and their mean, net-moment NRMSE."""
    from emg_msk_ros.learning.metrics import regression  # imports torch: only when scoring

    missing = [name for name in muscle_names if name not in truth.muscle_names]
    if missing:
        raise ValueError(f"the simulation has no truth for muscle(s) {', '.join(missing)}")
    true = truth.at(times)
    angle = regression(estimates["angle"], true["angle"])
    forces = {name: regression(estimates["force"][:, i],
                               true["force"][:, truth.muscle_names.index(name)])["nrmse"]
              for i, name in enumerate(muscle_names)}
    return {"samples": int(len(times)), "angle_rmse_deg": math.degrees(angle["rmse"]),
            "angle_r2": angle["r2"], "force_nrmse": float(np.mean(list(forces.values()))),
            "force_nrmse_per_muscle": forces,
            "net_moment_nrmse": regression(estimates["net_moment"], true["net_moment"])["nrmse"]}


def score_ahead(angle_ahead: np.ndarray, times: np.ndarray, horizon_s: float, truth: Truth,
                readings: Mapping[str, np.ndarray], start_ns: int) -> dict:
    """Predicted angles (rad) made at ``times`` s for ``horizon_s`` later, against the truth
    then, beside constant-velocity extrapolation of the joint-state ``readings`` (a
    :func:`joint_series`; stamps on the clock where EMG sample 0 is ``start_ns``) held at
    ``times``: RMSE (deg) of both and their ratio."""
    from emg_msk_ros.learning.metrics import regression

    target = truth.at(np.asarray(times, dtype=np.float64) + horizon_s)["angle"]
    held, _ = hold_at((readings["stamp_ns"] - start_ns) * 1e-9,
                      np.stack([readings["angle"], readings["velocity"]], axis=1), times)
    if np.isnan(held).any():
        raise ValueError("no joint-state reading at or before some of the scored estimates")
    predicted = regression(angle_ahead, target)["rmse"]
    constant = regression(held[:, 0] + held[:, 1] * horizon_s, target)["rmse"]
    return {"horizon_ms": 1000.0 * horizon_s,
            "angle_ahead_rmse_deg": math.degrees(predicted),
            "constant_velocity_rmse_deg": math.degrees(constant),
            "ratio_to_constant_velocity": predicted / constant if constant > 0 else math.nan}


def _rows(series: Mapping[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value[index] for key, value in series.items()}


def score_models(truth: Truth, start_ns: int, windows: Mapping[str, tuple[float, float]],
                 muscle_names: Sequence[str], *, emg_only: Mapping[str, np.ndarray],
                 state_aided: Mapping[str, np.ndarray] | None = None,
                 prediction: Mapping[str, np.ndarray] | None = None,
                 readings: Mapping[str, np.ndarray] | None = None,
                 horizon_s: float = 0.0) -> dict:
    """Per model and per time window (name -> [start, stop) s of the simulation), plus
    ``all`` (the windows together): the EMG-only model's :func:`score_now`; the state-aided
    model's (when given, with its ``prediction`` and the joint-state ``readings``)
    :func:`score_now` and :func:`score_ahead`. Every model is scored on the same samples: the
    stamps all of them estimated (so the warm-up before a full window counts for none) whose
    horizon still lies in the simulation."""
    stamps = emg_only["stamp_ns"]
    if state_aided is not None:
        stamps = np.intersect1d(np.intersect1d(stamps, state_aided["stamp_ns"]),
                                prediction["stamp_ns"])
    times = (stamps - start_ns) * 1e-9
    inside = np.zeros(len(times), dtype=bool)
    masks = {}
    for name, (begin, end) in windows.items():
        masks[name] = (times >= begin) & (times < end) & (times + horizon_s <= truth.time[-1])
        inside |= masks[name]
    masks["all"] = inside
    result: dict = {"emg_only": {}, "state_aided": {} if state_aided is not None else None}
    for name, mask in masks.items():
        if mask.sum() < 4:
            raise ValueError(f"{int(mask.sum())} estimates in {name} are too few to score")
        chosen = stamps[mask]

        def pick(series):
            order = np.argsort(series["stamp_ns"], kind="stable")
            return _rows(series, order[np.searchsorted(series["stamp_ns"][order], chosen)])

        result["emg_only"][name] = score_now(pick(emg_only), times[mask], truth, muscle_names)
        if state_aided is not None:
            result["state_aided"][name] = {
                **score_ahead(pick(prediction)["angle"], times[mask], horizon_s, truth,
                              readings, start_ns),
                **score_now(pick(state_aided), times[mask], truth, muscle_names)}
    return result
