"""Assist laws: from the human-state estimate to a desired joint torque (N·m, per joint).

A law is a callable ``law(inputs) -> np.ndarray`` over :class:`LawInputs` that names the inputs it
needs in ``law.inputs`` (the controller's watchdog guards exactly those). Laws hold no state;
:class:`LowPass` smooths their output. The safety layer, not the law, bounds what is commanded.

Sign convention: torque is positive toward a positive joint angle (flexion).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from emg_msk_ros.control.limits import LimitError, ParamSpec, per_joint_values

# Input names, as the topics they arrive on (relative names), so that reasons read naturally.
ESTIMATE = "msk/joint_states"
MUSCLES = "msk/muscle_states"
MEASURED = "joint_states"

LAW_NAMES = ("moment_fraction", "myoelectric", "impedance")

LAW_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("moment_gain", 0.3, 0.0, 1.0, "",
              "moment_fraction: share of the estimated biological moment to assist",
              per_joint=True),
    ParamSpec("myoelectric_gain", 10.0, 0.0, 200.0, "N·m",
              "myoelectric: torque per unit of (mean flexor - mean extensor) activation",
              per_joint=True),
    ParamSpec("stiffness", 20.0, 0.0, 500.0, "N·m/rad",
              "impedance: stiffness toward the predicted angle", per_joint=True),
    ParamSpec("damping", 1.0, 0.0, 50.0, "N·m·s/rad",
              "impedance: damping toward the predicted velocity", per_joint=True),
    ParamSpec("smoothing_time_constant", 0.02, 0.0, 1.0, "s",
              "first-order low-pass on the desired torque; 0 turns it off"),
)
LAW_SPEC_BY_NAME: dict[str, ParamSpec] = {spec.name: spec for spec in LAW_SPECS}


@dataclass(frozen=True)
class LawInputs:
    """What a law may use, per joint unless noted.

    ``est_*``: the estimate (angle rad, velocity rad/s, net muscle moment N·m). ``activation``:
    per muscle (0..1) in the controller's muscle order, or None if not received. ``meas_*``: the
    exoskeleton's measured angle (rad) and velocity (rad/s), or None if not fresh.
    """

    est_position: np.ndarray
    est_velocity: np.ndarray
    est_torque: np.ndarray
    activation: np.ndarray | None = None
    meas_position: np.ndarray | None = None
    meas_velocity: np.ndarray | None = None


class MomentFractionLaw:
    """τ = g · τ_human: a fraction g ∈ [0, 1] of the estimated biological moment."""

    inputs = frozenset({ESTIMATE})

    def __init__(self, gain: np.ndarray):
        self.gain = np.asarray(gain, dtype=float)

    def __call__(self, x: LawInputs) -> np.ndarray:
        return self.gain * x.est_torque


class MyoelectricLaw:
    """τ_j = G_j · (mean flexor activation − mean extensor activation) of joint j (G in N·m).

    ``flexors[j]`` / ``extensors[j]`` index into the controller's muscle order; an empty group
    contributes zero.
    """

    inputs = frozenset({ESTIMATE, MUSCLES})

    def __init__(self, gain: np.ndarray, flexors: Sequence[np.ndarray],
                 extensors: Sequence[np.ndarray]):
        self.gain = np.asarray(gain, dtype=float)
        self.flexors = [np.asarray(i, dtype=int) for i in flexors]
        self.extensors = [np.asarray(i, dtype=int) for i in extensors]

    def __call__(self, x: LawInputs) -> np.ndarray | None:
        if x.activation is None:
            return None
        drive = np.array([_group_mean(x.activation, f) - _group_mean(x.activation, e)
                          for f, e in zip(self.flexors, self.extensors)])
        return self.gain * drive


def _group_mean(activation: np.ndarray, index: np.ndarray) -> float:
    return float(activation[index].mean()) if index.size else 0.0


class ImpedanceLaw:
    """τ = K·(θ̂ − θ) + D·(θ̂̇ − θ̇): a spring-damper pulling the measured joint (θ, θ̇) toward
    the predicted one (θ̂, θ̂̇). Needs the exoskeleton's measured joint state."""

    inputs = frozenset({ESTIMATE, MEASURED})

    def __init__(self, stiffness: np.ndarray, damping: np.ndarray):
        self.stiffness = np.asarray(stiffness, dtype=float)
        self.damping = np.asarray(damping, dtype=float)

    def __call__(self, x: LawInputs) -> np.ndarray | None:
        if x.meas_position is None or x.meas_velocity is None:
            return None
        return (self.stiffness * (x.est_position - x.meas_position)
                + self.damping * (x.est_velocity - x.meas_velocity))


class LowPass:
    """First-order low-pass y ← y + α(x − y), α = dt / (τ + dt) (backward Euler: stable for any
    dt). τ = 0 passes x through. The first sample initialises the state."""

    def __init__(self, time_constant: float):
        if not time_constant >= 0.0:
            raise LimitError(f"smoothing_time_constant = {time_constant} must be >= 0 s")
        self.time_constant = float(time_constant)
        self._state: np.ndarray | None = None

    def reset(self) -> None:
        self._state = None

    def __call__(self, x: np.ndarray, dt: float) -> np.ndarray:
        if self._state is None or self.time_constant == 0.0:
            self._state = np.array(x, dtype=float)
        else:
            alpha = dt / (self.time_constant + dt)
            # A convex combination: no overflow for finite x and state.
            self._state = (1.0 - alpha) * self._state + alpha * x
        return self._state


def muscle_groups(joint_names: Sequence[str], flexor_entries: Sequence[str],
                  extensor_entries: Sequence[str]) -> tuple[list[str], list[np.ndarray],
                                                            list[np.ndarray]]:
    """Parse flexor/extensor lists for the myoelectric law.

    An entry ``"muscle"`` belongs to every joint; ``"joint:muscle"`` to that joint only.
    Returns (muscle names in first-seen order, flexor indices per joint, extensor indices per
    joint). Raises :class:`LimitError` for an unknown joint, a muscle that is both flexor and
    extensor of one joint, or a joint with neither.
    """
    muscles: list[str] = []
    groups = {role: [[] for _ in joint_names] for role in ("flexor", "extensor")}
    for role, entries in (("flexor", flexor_entries), ("extensor", extensor_entries)):
        for entry in entries:
            joint, sep, muscle = entry.rpartition(":")
            if sep and joint not in joint_names:
                raise LimitError(f"{role}_muscles entry {entry!r}: unknown joint {joint!r} "
                                 f"(joints: {', '.join(joint_names)})")
            if not muscle:
                raise LimitError(f"{role}_muscles entry {entry!r} names no muscle")
            if muscle not in muscles:
                muscles.append(muscle)
            targets = [joint_names.index(joint)] if sep else range(len(joint_names))
            for j in targets:
                groups[role][j].append(muscles.index(muscle))
    for j, joint in enumerate(joint_names):
        flex, ext = set(groups["flexor"][j]), set(groups["extensor"][j])
        if not flex and not ext:
            raise LimitError(f"myoelectric law: joint {joint!r} has no flexor or extensor muscle")
        both = flex & ext
        if both:
            raise LimitError(f"myoelectric law: muscle {muscles[min(both)]!r} is both flexor and "
                             f"extensor of joint {joint!r}")
    as_index = [[np.array(sorted(set(g)), dtype=int) for g in groups[role]]
                for role in ("flexor", "extensor")]
    return muscles, as_index[0], as_index[1]


AssistLaw = MomentFractionLaw | MyoelectricLaw | ImpedanceLaw


def make_law(name: str, values: Mapping[str, float | Sequence[float]],
             joint_names: Sequence[str], flexor_entries: Sequence[str] = (),
             extensor_entries: Sequence[str] = ()) -> tuple[AssistLaw, list[str]]:
    """Build the law called ``name`` (one of :data:`LAW_NAMES`) from per-joint settings in
    ``values`` (missing ones take their defaults). Returns (law, muscle names the law reads).

    Raises :class:`LimitError` naming the setting that is out of range or unknown.
    """
    n = len(joint_names)

    def setting(key: str) -> np.ndarray:
        spec = LAW_SPEC_BY_NAME[key]
        return per_joint_values(spec, values.get(key, spec.default), n)

    if name == "moment_fraction":
        return MomentFractionLaw(setting("moment_gain")), []
    if name == "myoelectric":
        muscles, flexors, extensors = muscle_groups(joint_names, flexor_entries,
                                                    extensor_entries)
        return MyoelectricLaw(setting("myoelectric_gain"), flexors, extensors), muscles
    if name == "impedance":
        return ImpedanceLaw(setting("stiffness"), setting("damping")), []
    raise LimitError(f"assist_law = {name!r} is not one of {', '.join(LAW_NAMES)}")
